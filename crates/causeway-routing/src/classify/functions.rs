//! Function names the classifier knows about. All lowercase; a trailing `*`
//! makes an entry a prefix.

/// Functions that must run on the session's primary connection: they write
/// (WAL, sequences, large objects), take locks or state that lives in one
/// backend, fail on a standby, or act on the server they run on.
pub const DEFAULT_WRITING_FUNCTIONS: &[&str] = &[
    // Sequences. currval/lastval read state of *this* backend's last nextval.
    "nextval",
    "setval",
    "currval",
    "lastval",
    // Advisory locks (reported as Hazard::AdvisoryLock).
    "pg_advisory_*",
    "pg_try_advisory_*",
    // Session settings (reported as Hazard::SessionState); setseed sets
    // this backend's random() sequence.
    "set_config",
    "setseed",
    // NOTIFY (reported as Hazard::ListenNotify).
    "pg_notify",
    // Large objects: writes, and descriptors that live in one backend.
    "lo_*",
    "loread",
    "lowrite",
    // Assign a transaction id: impossible during recovery.
    "txid_current",
    "pg_current_xact_id",
    // Fail on a standby ("recovery is in progress").
    "pg_current_wal_*",
    "pg_walfile_name*",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_logical_emit_message",
    // Replication slots and origins.
    "pg_create_*",
    "pg_drop_replication_slot",
    "pg_copy_*_replication_slot",
    "pg_replication_slot_advance",
    // get_* consumes changes; peek_* fails during recovery (PG < 16).
    "pg_logical_slot_*",
    "pg_replication_origin_*",
    // Act on whichever server runs them.
    "pg_promote",
    "pg_wal_replay_pause",
    "pg_wal_replay_resume",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_stat_reset*",
    "pg_stat_statements_reset",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_import_system_collations",
    // Index maintenance: they write the index.
    "brin_summarize_*",
    "brin_desummarize_range",
    "gin_clean_pending_list",
    "pg_file_write",
    "pg_file_rename",
    "pg_file_unlink",
    // dblink: remote writes and per-backend named connections.
    "dblink_exec",
    "dblink_connect*",
    "dblink_disconnect",
    "dblink_open",
    "dblink_send_query",
];

/// Patterns bucketed by their first byte, so a call is compared only with
/// the patterns that can match it.
#[derive(Debug, Clone)]
pub(crate) struct PatternSet {
    /// Sorted by first byte; patterns starting with `*` come first.
    patterns: Vec<Pattern>,
    /// `patterns[start[b]..start[b + 1]]` start with byte `b`.
    start: Box<[u16; 257]>,
    /// How many patterns start with `*` (the first ones).
    wild: usize,
}

impl PatternSet {
    pub fn new(mut patterns: Vec<Pattern>) -> Self {
        let key = |p: &Pattern| match p.text.as_bytes().first() {
            Some(b'*') | None => 0u16,
            Some(&b) => b as u16 + 1,
        };
        patterns.sort_by(|a, b| key(a).cmp(&key(b)).then_with(|| a.text.cmp(&b.text)));
        patterns.dedup();
        let wild = patterns
            .iter()
            .take_while(|p| p.text.as_bytes().first().is_none_or(|&b| b == b'*'))
            .count();
        let mut start = Box::new([0u16; 257]);
        for (b, slot) in start.iter_mut().enumerate() {
            *slot = patterns[wild..]
                .iter()
                .take_while(|p| (p.text.as_bytes()[0] as usize) < b)
                .count() as u16
                + wild as u16;
        }
        PatternSet {
            patterns,
            start,
            wild,
        }
    }

    pub fn matches(&self, lower: &[u8]) -> bool {
        let Some(&first) = lower.first() else {
            return false;
        };
        let b = first as usize;
        let bucket = &self.patterns[self.start[b] as usize..self.start[b + 1] as usize];
        bucket.iter().any(|p| p.matches(lower))
            || self.patterns[..self.wild].iter().any(|p| p.matches(lower))
    }
}

/// What a matching writing-function name means.
pub(crate) enum FnKind {
    Advisory,
    SetConfig,
    Notify,
    Writing,
}

pub(crate) fn kind_of(lower: &[u8]) -> FnKind {
    if lower.starts_with(b"pg_advisory_") || lower.starts_with(b"pg_try_advisory_") {
        FnKind::Advisory
    } else if lower == b"set_config" || lower == b"setseed" {
        FnKind::SetConfig
    } else if lower == b"pg_notify" {
        FnKind::Notify
    } else {
        FnKind::Writing
    }
}

/// A lowercase function name, or a pattern with one `*` matching any run
/// (`lo_*`, `pg_copy_*_replication_slot`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    text: String,
    star: Option<usize>,
}

impl Pattern {
    pub fn new(text: String) -> Self {
        let star = text.find('*');
        Pattern { text, star }
    }

    #[inline]
    pub fn matches(&self, lower: &[u8]) -> bool {
        let p = self.text.as_bytes();
        match self.star {
            None => p == lower,
            Some(s) => {
                let (head, tail) = (&p[..s], &p[s + 1..]);
                lower.len() >= head.len() + tail.len()
                    && lower.starts_with(head)
                    && lower.ends_with(tail)
            }
        }
    }
}

/// Names that may precede `(` without calling anything dangerous, for
/// `strict_functions`: SQL keywords that take a parenthesised operand, type
/// names with a type modifier, and read-only built-in functions. Sorted for
/// binary search (checked by a test).
pub const SAFE_FUNCTIONS: &[&str] = &[
    "abs",
    "acos",
    "age",
    "all",
    "and",
    "any",
    "array",
    "array_agg",
    "array_append",
    "array_cat",
    "array_length",
    "array_lower",
    "array_position",
    "array_positions",
    "array_prepend",
    "array_remove",
    "array_replace",
    "array_to_json",
    "array_to_string",
    "array_upper",
    "as",
    "ascii",
    "asin",
    "atan",
    "atan2",
    "avg",
    "bernoulli",
    "between",
    "bigint",
    "bit",
    "bit_and",
    "bit_length",
    "bit_or",
    "bool",
    "bool_and",
    "bool_or",
    "bpchar",
    "btrim",
    "by",
    "cardinality",
    "case",
    "cast",
    "cbrt",
    "ceil",
    "ceiling",
    "char",
    "char_length",
    "character",
    "character_length",
    "chr",
    "clock_timestamp",
    "coalesce",
    "col_description",
    "collation",
    "concat",
    "concat_ws",
    "convert",
    "convert_from",
    "convert_to",
    "corr",
    "cos",
    "count",
    "covar_pop",
    "covar_samp",
    "cube",
    "cume_dist",
    "current_database",
    "current_schema",
    "current_schemas",
    "current_setting",
    "current_time",
    "current_timestamp",
    "date",
    "date_bin",
    "date_part",
    "date_trunc",
    "dec",
    "decimal",
    "decode",
    "degrees",
    "dense_rank",
    "distinct",
    "div",
    "else",
    "encode",
    "escape",
    "every",
    "except",
    "exists",
    "exp",
    "extract",
    "filter",
    "first_value",
    "float",
    "float4",
    "float8",
    "floor",
    "for",
    "format",
    "format_type",
    "from",
    "gen_random_uuid",
    "generate_series",
    "generate_subscripts",
    "greatest",
    "group",
    "grouping",
    "has_column_privilege",
    "has_database_privilege",
    "has_function_privilege",
    "has_schema_privilege",
    "has_sequence_privilege",
    "has_table_privilege",
    "having",
    "in",
    "initcap",
    "int",
    "integer",
    "intersect",
    "interval",
    "is",
    "isfinite",
    "join",
    "json",
    "json_agg",
    "json_array",
    "json_array_elements",
    "json_array_elements_text",
    "json_array_length",
    "json_arrayagg",
    "json_build_array",
    "json_build_object",
    "json_each",
    "json_each_text",
    "json_exists",
    "json_extract_path",
    "json_extract_path_text",
    "json_object",
    "json_object_agg",
    "json_object_keys",
    "json_objectagg",
    "json_populate_record",
    "json_query",
    "json_scalar",
    "json_serialize",
    "json_strip_nulls",
    "json_table",
    "json_typeof",
    "json_value",
    "jsonb_agg",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "jsonb_array_length",
    "jsonb_build_array",
    "jsonb_build_object",
    "jsonb_each",
    "jsonb_each_text",
    "jsonb_extract_path",
    "jsonb_extract_path_text",
    "jsonb_insert",
    "jsonb_object",
    "jsonb_object_agg",
    "jsonb_object_keys",
    "jsonb_path_exists",
    "jsonb_path_match",
    "jsonb_path_query",
    "jsonb_path_query_array",
    "jsonb_path_query_first",
    "jsonb_populate_record",
    "jsonb_pretty",
    "jsonb_set",
    "jsonb_strip_nulls",
    "jsonb_typeof",
    "justify_days",
    "justify_hours",
    "justify_interval",
    "lag",
    "last_value",
    "lateral",
    "lead",
    "least",
    "left",
    "length",
    "like",
    "limit",
    "ln",
    "localtime",
    "localtimestamp",
    "log",
    "lower",
    "lpad",
    "ltrim",
    "make_date",
    "make_interval",
    "make_time",
    "make_timestamp",
    "make_timestamptz",
    "materialized",
    "max",
    "md5",
    "min",
    "mod",
    "mode",
    "normalize",
    "not",
    "now",
    "nth_value",
    "ntile",
    "nullif",
    "numeric",
    "obj_description",
    "octet_length",
    "offset",
    "on",
    "or",
    "ordinality",
    "over",
    "overlaps",
    "overlay",
    "partition",
    "percent_rank",
    "percentile_cont",
    "percentile_disc",
    "pg_backend_pid",
    "pg_column_size",
    "pg_database_size",
    "pg_get_constraintdef",
    "pg_get_expr",
    "pg_get_functiondef",
    "pg_get_indexdef",
    "pg_get_serial_sequence",
    "pg_get_userbyid",
    "pg_get_viewdef",
    "pg_has_role",
    "pg_indexes_size",
    "pg_is_in_recovery",
    "pg_is_wal_replay_paused",
    "pg_last_wal_receive_lsn",
    "pg_last_wal_replay_lsn",
    "pg_last_xact_replay_timestamp",
    "pg_postmaster_start_time",
    "pg_relation_size",
    "pg_size_pretty",
    "pg_sleep",
    "pg_table_is_visible",
    "pg_table_size",
    "pg_total_relation_size",
    "pg_typeof",
    "pg_wal_lsn_diff",
    "pi",
    "position",
    "power",
    "precision",
    "quote_ident",
    "quote_literal",
    "quote_nullable",
    "radians",
    "random",
    "rank",
    "real",
    "regexp_count",
    "regexp_like",
    "regexp_match",
    "regexp_matches",
    "regexp_replace",
    "regexp_split_to_array",
    "regexp_split_to_table",
    "repeat",
    "repeatable",
    "replace",
    "returning",
    "reverse",
    "right",
    "rollup",
    "round",
    "row",
    "row_number",
    "row_to_json",
    "rows",
    "rpad",
    "rtrim",
    "select",
    "sets",
    "sign",
    "similar",
    "sin",
    "smallint",
    "some",
    "split_part",
    "sqrt",
    "starts_with",
    "statement_timestamp",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "string_agg",
    "string_to_array",
    "strpos",
    "substr",
    "substring",
    "sum",
    "system",
    "system_rows",
    "system_time",
    "tablesample",
    "tan",
    "text",
    "then",
    "time",
    "timeofday",
    "timestamp",
    "timestamptz",
    "to_char",
    "to_date",
    "to_hex",
    "to_json",
    "to_jsonb",
    "to_number",
    "to_timestamp",
    "transaction_timestamp",
    "translate",
    "treat",
    "trim",
    "trunc",
    "union",
    "unnest",
    "upper",
    "using",
    "values",
    "var_pop",
    "var_samp",
    "varchar",
    "variance",
    "varying",
    "version",
    "when",
    "where",
    "width_bucket",
    "window",
    "with",
    "within",
    "xmlagg",
    "xmlattributes",
    "xmlconcat",
    "xmlelement",
    "xmlexists",
    "xmlforest",
    "xmlparse",
    "xmlserialize",
    "xmltable",
];
