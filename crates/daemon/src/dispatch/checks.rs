//! What runs before any handler: name resolution (spec/admin-api.md §1.2
//! step 5) and the generic checks of §1.4, in qubesd's order.
//!
//! 1. the source, then the destination, are resolved: `uuid:` form
//!    (`QubesVMInvalidUUIDError`), Qubes' name rules (`QubesValueError`),
//!    existence (`QubesVMNotFoundError` `No such domain: '<name>'`): so an
//!    unknown destination wins over an unknown method;
//! 2. the method must exist (`ProtocolError` `no such method: '<m>'`, the
//!    name in Python repr);
//! 3. payload, argument and destination against the method's
//!    [`MethodSpec`], each with qubesd's exact `ProtocolError` text.

use qpci_api::RawRequest;
use qpci_core::registry::{Registry, py_repr};
use qpci_types::QubeName;

use super::{Call, Exc, Handler, MethodSpec, Table};

/// Length of `uuid:` plus a 36-character uuid.
const UUID_DEST_LEN: usize = 41;

/// Resolves a source or destination as qubesd's `decode_vm` does.
pub fn resolve(registry: &Registry, untrusted: &str) -> Result<QubeName, Exc> {
    if let Some(untrusted_uuid) = untrusted.strip_prefix("uuid:") {
        if untrusted.len() != UUID_DEST_LEN || !uuid_shape(untrusted_uuid) {
            return Err(Exc::new(
                "QubesVMInvalidUUIDError",
                format!("VM UUID is not valid: {}", py_repr(untrusted)),
            ));
        }
        return registry
            .names()
            .into_iter()
            .find(|n| registry.uuid_of(n.as_str()).as_deref() == Some(untrusted_uuid))
            .ok_or_else(|| {
                Exc::new(
                    "QubesVMNotFoundError",
                    format!("No such domain: {}", py_repr(untrusted)),
                )
            });
    }
    registry
        .lookup(untrusted)
        .map_err(|e| Exc::new(e.kind.name(), e.message))
}

/// `[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}` (lower case only, as qubesd).
fn uuid_shape(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    groups.len() == lens.len()
        && groups.iter().zip(lens).all(|(g, n)| {
            g.len() == n
                && g.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// The generic checks of §1.4 for a method that exists, in qubesd's order.
pub fn generic_checks(
    spec: &MethodSpec,
    dest: &QubeName,
    untrusted_arg: &str,
    untrusted_payload: &[u8],
) -> Result<(), Exc> {
    match (spec.wants_payload, untrusted_payload.is_empty()) {
        (Some(true), true) => return Err(Exc::protocol("expected payload")),
        (Some(false), false) => return Err(Exc::protocol("unexpected payload")),
        _ => {}
    }
    match (spec.wants_arg, untrusted_arg.is_empty()) {
        (Some(true), true) => return Err(Exc::protocol("expected an argument")),
        (Some(false), false) => return Err(Exc::protocol("unexpected argument")),
        _ => {}
    }
    match (spec.dest_adminvm, dest.is_dom0()) {
        (Some(true), false) => Err(Exc::protocol("expected destination to be AdminVM")),
        (Some(false), true) => Err(Exc::protocol("expected destination to not be AdminVM")),
        _ => Ok(()),
    }
}

/// `no such method: '<m>'`.
pub fn no_such_method(method: &str) -> Exc {
    Exc::protocol(format!("no such method: {}", py_repr(method)))
}

/// Resolves names and runs the generic checks against `spec` (a method the
/// caller already looked up, or `None` for an unknown one).
pub fn check_request(
    registry: &Registry,
    spec: Option<&MethodSpec>,
    request: RawRequest,
) -> Result<Call, Exc> {
    let source = resolve(registry, &request.source)?;
    let dest = resolve(registry, &request.dest)?;
    let spec = spec.ok_or_else(|| no_such_method(&request.method))?;
    generic_checks(spec, &dest, &request.arg, &request.payload)?;
    Ok(Call {
        method: request.method,
        untrusted_arg: request.arg,
        source,
        dest,
        untrusted_payload: request.payload,
    })
}

/// Everything from a framed request to the handler's result: resolution,
/// generic checks, the handler.
pub fn prepare(
    table: &Table,
    registry: &Registry,
    request: RawRequest,
) -> Result<(Call, Handler), Exc> {
    let entry = table.get(&request.method).copied();
    let call = check_request(registry, entry.as_ref().map(|(s, _)| s), request)?;
    let handler = entry
        .map(|(_, h)| h)
        .ok_or_else(|| no_such_method(&call.method))?;
    Ok((call, handler))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(
        dest_adminvm: Option<bool>,
        wants_arg: Option<bool>,
        wants_payload: Option<bool>,
    ) -> MethodSpec {
        MethodSpec {
            name: "test.M",
            dest_adminvm,
            wants_arg,
            wants_payload,
            writes: false,
            acts: false,
        }
    }

    fn msg(r: Result<(), Exc>) -> String {
        r.unwrap_err().message
    }

    #[test]
    fn generic_check_texts_in_order() {
        let dom0 = QubeName::dom0();
        let work: QubeName = "work".parse().unwrap();
        let all = spec(Some(true), Some(true), Some(true));
        assert_eq!(
            msg(generic_checks(&all, &work, "", b"")),
            "expected payload"
        );
        assert_eq!(
            msg(generic_checks(&all, &work, "", b"x")),
            "expected an argument"
        );
        assert_eq!(
            msg(generic_checks(&all, &work, "a", b"x")),
            "expected destination to be AdminVM"
        );
        assert!(generic_checks(&all, &dom0, "a", b"x").is_ok());
        let none = spec(Some(false), Some(false), Some(false));
        assert_eq!(
            msg(generic_checks(&none, &work, "a", b"x")),
            "unexpected payload"
        );
        assert_eq!(
            msg(generic_checks(&none, &work, "a", b"")),
            "unexpected argument"
        );
        assert_eq!(
            msg(generic_checks(&none, &dom0, "", b"")),
            "expected destination to not be AdminVM"
        );
        let any = spec(None, None, None);
        assert!(generic_checks(&any, &dom0, "a", b"x").is_ok());
    }

    #[test]
    fn resolution_errors() {
        let reg = Registry::new_default();
        let e = resolve(&reg, "nope").unwrap_err();
        assert_eq!(
            (e.class.as_str(), e.message.as_str()),
            ("QubesVMNotFoundError", "No such domain: 'nope'")
        );
        assert_eq!(resolve(&reg, "-x").unwrap_err().class, "QubesValueError");
        assert_eq!(resolve(&reg, "").unwrap_err().class, "QubesValueError");
        assert_eq!(
            resolve(&reg, "uuid:1234").unwrap_err().class,
            "QubesVMInvalidUUIDError"
        );
        assert_eq!(
            resolve(&reg, "uuid:00000000-0000-0000-0000-00000000000A")
                .unwrap_err()
                .class,
            "QubesVMInvalidUUIDError"
        );
        assert!(
            resolve(&reg, "uuid:00000000-0000-0000-0000-000000000000")
                .unwrap()
                .is_dom0()
        );
        assert_eq!(
            resolve(&reg, "uuid:00000000-0000-0000-0000-000000000001")
                .unwrap_err()
                .class,
            "QubesVMNotFoundError"
        );
        assert!(resolve(&reg, "dom0").unwrap().is_dom0());
    }

    #[test]
    fn unknown_dest_wins_over_unknown_method() {
        let reg = Registry::new_default();
        let table = Table::new();
        let e = prepare(
            &table,
            &reg,
            RawRequest::new("no.Such", "", "ghost", b"".to_vec()),
        )
        .unwrap_err();
        assert_eq!(e.class, "QubesVMNotFoundError");
        let e = prepare(
            &table,
            &reg,
            RawRequest::new("no.Such'", "", "dom0", b"".to_vec()),
        )
        .unwrap_err();
        assert_eq!(e.message, "no such method: \"no.Such'\"");
    }
}
