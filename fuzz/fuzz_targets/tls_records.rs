#![no_main]
mailscope_fuzz::stage!("tls_records");
