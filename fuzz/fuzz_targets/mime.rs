#![no_main]
mailscope_fuzz::stage!("mime");
