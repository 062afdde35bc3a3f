//! `-o KEY=VALUE` and `--ro` (spec/qvm-tools.md §2.11), typed as DESIGN.md
//! "Options" says: only `no-strict-reset` and `permissive`, booleans.

use qpci_api::kv;
use qpci_types::AssignOptions;

use super::quote;

/// Builds typed options from the `-o` values in command-line order, then
/// `--ro`. The error is the message of a usage error.
pub fn parse_options(untrusted: &[String], read_only: bool) -> Result<AssignOptions, String> {
    let mut options = AssignOptions::default();
    for item in untrusted {
        let Some((key, value)) = item.split_once('=') else {
            return Err(format!(
                "invalid option {}: expected KEY=VALUE",
                quote(item)
            ));
        };
        kv::check_key(key)
            .and_then(|()| kv::check_value(value))
            .map_err(|e| format!("invalid option {}: {e}", quote(item)))?;
        let (key, value) = if key == "ro" {
            ("read-only", ro_value(value)?)
        } else {
            (key, value)
        };
        options.apply(key, value).map_err(|e| e.to_string())?;
    }
    if read_only {
        options
            .apply("read-only", "yes")
            .map_err(|e| format!("--ro: {e}"))?;
    }
    Ok(options)
}

/// Qubes' rewrite of `-o ro=V` into `read-only=yes|no`.
fn ro_value(value: &str) -> Result<&'static str, String> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Ok("yes"),
        "0" | "false" | "no" => Ok("no"),
        _ => Err(format!(
            "invalid value {} for option 'ro': expected 1, true, yes, 0, false or no",
            quote(value)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(items: &[&str], ro: bool) -> Result<AssignOptions, String> {
        let items: Vec<String> = items.iter().map(|s| (*s).to_owned()).collect();
        parse_options(&items, ro)
    }

    #[test]
    fn known_booleans() {
        let o = parse(&["no-strict-reset=yes", "permissive=ON"], false).unwrap();
        assert!(o.no_strict_reset && o.permissive);
        assert!(
            parse(&["permissive=true", "permissive=0"], false)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(
            parse(&["foo"], false).unwrap_err(),
            "invalid option 'foo': expected KEY=VALUE"
        );
        assert!(
            parse(&["no-strict-reset=maybe"], false)
                .unwrap_err()
                .contains("'maybe'")
        );
        assert!(
            parse(&["read-only=yes"], false)
                .unwrap_err()
                .contains("known options are no-strict-reset, permissive")
        );
        assert!(
            parse(&["ro=maybe"], false)
                .unwrap_err()
                .contains("'maybe' for option 'ro'")
        );
        assert!(parse(&["ro=1"], false).unwrap_err().contains("'read-only'"));
        assert!(
            parse(&[], true)
                .unwrap_err()
                .starts_with("--ro: unknown PCI option 'read-only'")
        );
        assert!(
            parse(&["a b=1"], false)
                .unwrap_err()
                .contains("Invalid chars in property name: {' '}")
        );
        assert!(
            parse(&["k=é"], false)
                .unwrap_err()
                .contains("Invalid chars in property value: {'é'}")
        );
    }
}
