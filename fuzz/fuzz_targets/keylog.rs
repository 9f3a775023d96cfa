#![no_main]
mailscope_fuzz::stage!("keylog");
