//! `process.args[0]` as `path#func`.

use execdriver_api::DriverError;

/// The module to run and the function to call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The module's path inside the rootfs.
    pub path: String,
    /// The exported function; `None` means `_start` (core) or `wasi:cli/run` (component).
    pub func: Option<String>,
}

/// Parses `path` or `path#func`. An empty path or an empty function name is an error naming
/// `process.args[0]`.
pub(crate) fn parse(arg0: &str) -> Result<Entry, DriverError> {
    let field = "process.args[0]";
    let (path, func) = match arg0.rsplit_once('#') {
        Some((p, f)) => (p, Some(f)),
        None => (arg0, None),
    };
    if path.is_empty() {
        return Err(DriverError::invalid_spec(
            field,
            format!("{arg0:?} has an empty module path"),
        ));
    }
    if path.contains('\0') {
        return Err(DriverError::invalid_spec(field, "contains a NUL byte"));
    }
    if func.is_some_and(str::is_empty) {
        return Err(DriverError::invalid_spec(
            field,
            format!("{arg0:?} has an empty function name after '#'"),
        ));
    }
    Ok(Entry {
        path: path.to_owned(),
        func: func.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn forms() {
        assert_eq!(
            parse("/app.wasm").unwrap(),
            Entry {
                path: "/app.wasm".into(),
                func: None
            }
        );
        assert_eq!(
            parse("app.wat#main").unwrap(),
            Entry {
                path: "app.wat".into(),
                func: Some("main".into())
            }
        );
        // The last '#' separates: a '#' inside the path is kept.
        assert_eq!(
            parse("dir#1/app.wasm#run").unwrap(),
            Entry {
                path: "dir#1/app.wasm".into(),
                func: Some("run".into())
            }
        );
    }

    #[test]
    fn errors_name_the_argument() {
        for (a, want) in [
            ("", "empty module path"),
            ("#main", "empty module path"),
            ("app.wasm#", "empty function name"),
        ] {
            let e = parse(a).unwrap_err().to_string();
            assert!(e.starts_with("invalid spec: process.args[0]: "), "{e}");
            assert!(e.contains(want), "{a:?}: {e}");
        }
    }

    proptest! {
        #[test]
        fn path_and_func_round_trip(path in "[^#\0]{1,40}", func in proptest::option::of("[^#\0]{1,20}")) {
            let arg = match &func {
                Some(f) => format!("{path}#{f}"),
                None => path.clone(),
            };
            let e = parse(&arg).unwrap();
            prop_assert_eq!(e.path, path);
            prop_assert_eq!(e.func, func);
        }

        #[test]
        fn never_panics(s in "\\PC{0,60}") {
            let _ = parse(&s);
        }
    }
}
