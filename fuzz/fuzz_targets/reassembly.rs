#![no_main]
mailscope_fuzz::stage!("reassembly");
