#![no_main]
mailscope_fuzz::stage!("smtp");
