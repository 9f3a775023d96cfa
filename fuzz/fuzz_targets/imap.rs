#![no_main]
mailscope_fuzz::stage!("imap");
