#![no_main]
mailscope_fuzz::stage!("pop3");
