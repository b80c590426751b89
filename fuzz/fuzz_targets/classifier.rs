//! The SQL classifier, default and strict: never panics, and is a pure
//! function of the text (same answer twice; a leading comment never turns
//! a non-read into a read).
#![no_main]

use causeway_routing::Classifier;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn classifiers() -> &'static [Classifier; 2] {
    static C: OnceLock<[Classifier; 2]> = OnceLock::new();
    C.get_or_init(|| [Classifier::default(), Classifier::default().strict_functions(true)])
}

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    for c in classifiers() {
        let a = c.classify(sql);
        let b = c.classify(sql);
        assert_eq!(a, b);
        let _ = causeway_routing::statement_count(sql);
        if !a.class.is_read() {
            let commented = format!("/* x */ {sql}");
            assert!(
                !c.classify(&commented).class.is_read(),
                "a comment made {sql:?} a read"
            );
        }
    }
});
