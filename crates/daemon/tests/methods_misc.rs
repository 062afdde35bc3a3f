//! Conformance: features, tags and labels (spec/admin-api.md §9.10–§9.12),
//! byte-exact.

mod methods_common;

use methods_common::Fixture;

#[test]
fn s9_10_features() {
    let mut fx = Fixture::new();
    let cases: &[(&[u8], &[u8])] = &[
        (
            b"admin.vm.feature.Set+prohibit-start dom0 name work\0disabled for test",
            b"0\0",
        ),
        (
            b"admin.vm.feature.List+ dom0 name work\0",
            b"0\0prohibit-start\n",
        ),
        (
            b"admin.vm.feature.Get+prohibit-start dom0 name work\0",
            b"0\0disabled for test",
        ),
        (
            b"admin.vm.feature.Get+nosuch dom0 name work\0",
            b"2\0QubesFeatureNotFoundError\0\0Feature not set for domain work: nosuch\0",
        ),
        (
            b"admin.vm.feature.Remove+prohibit-start dom0 name work\0",
            b"0\0",
        ),
        (
            b"admin.vm.feature.Remove+prohibit-start dom0 name work\0",
            b"2\0QubesFeatureNotFoundError\0\0Feature not set for domain work: prohibit-start\0",
        ),
        (
            b"admin.vm.feature.Set+bad/name dom0 name work\x001",
            b"2\0ProtocolError\0\0feature name contains illegal characters\0",
        ),
        (
            b"admin.vm.feature.Set+os dom0 name work\0a\tb",
            b"2\0ProtocolError\0\0os value contains illegal characters\0",
        ),
        (
            b"admin.vm.feature.Set+os dom0 name fedora-40\0Linux",
            b"0\0",
        ),
        (
            b"admin.vm.feature.CheckWithTemplate+os dom0 name work\0",
            b"0\0Linux",
        ),
        (
            b"admin.vm.feature.CheckWithTemplate+nosuch dom0 name work\0",
            b"2\0QubesFeatureNotFoundError\0\0Feature not set for domain work: nosuch\0",
        ),
        // An empty payload is false (the client sends False that way).
        (b"admin.vm.feature.Set+gui dom0 name work\0", b"0\0"),
        (b"admin.vm.feature.Get+gui dom0 name work\0", b"0\0"),
    ];
    for (request, reply) in cases {
        fx.expect(request, reply);
    }
    fx.ok(b"admin.vm.feature.Set+ipv6 dom0 name work\x001");
    assert!(fx.changed());
    assert_eq!(fx.events()[0].name, "domain-feature-set:ipv6");
}

#[test]
fn s9_11_tags() {
    let mut fx = Fixture::new();
    let cases: &[(&[u8], &[u8])] = &[
        (b"admin.vm.tag.List+ dom0 name work\0", b"0\0"),
        (b"admin.vm.tag.Set+backup dom0 name work\0", b"0\0"),
        (b"admin.vm.tag.Set+backup dom0 name work\0", b"0\0"),
        (b"admin.vm.tag.Set+audit-2 dom0 name work\0", b"0\0"),
        (
            b"admin.vm.tag.List+ dom0 name work\0",
            b"0\0audit-2\nbackup\n",
        ),
        (b"admin.vm.tag.Get+backup dom0 name work\0", b"0\x001"),
        (b"admin.vm.tag.Get+nosuch dom0 name work\0", b"0\x000"),
        (
            b"admin.vm.tag.Get+ dom0 name work\0",
            b"2\0ProtocolError\0\0expected an argument\0",
        ),
        (
            b"admin.vm.tag.Set+a.b dom0 name work\0",
            b"2\0QubesInvalidTagError\0\0disallowed characters\0",
        ),
        (b"admin.vm.tag.Remove+backup dom0 name work\0", b"0\0"),
        (
            b"admin.vm.tag.Remove+backup dom0 name work\0",
            b"2\0QubesTagNotFoundError\0\0Tag not set for domain work: backup\0",
        ),
    ];
    for (request, reply) in cases {
        fx.expect(request, reply);
    }
}

#[test]
fn s9_12_labels() {
    let mut fx = Fixture::new();
    let cases: &[(&[u8], &[u8])] = &[
        (
            b"admin.label.List+ dom0 name dom0\0",
            b"0\0red\norange\nyellow\ngreen\ngray\nblue\npurple\nblack\n",
        ),
        (b"admin.label.Get+red dom0 name dom0\0", b"0\x000xcc0000"),
        (b"admin.label.Get+3 dom0 name dom0\0", b"0\x000xedd400"),
        (b"admin.label.Index+black dom0 name dom0\0", b"0\x008"),
        (
            b"admin.label.Get+nosuch dom0 name dom0\0",
            b"2\0QubesLabelNotFoundError\0\0Label does not exist: nosuch\0",
        ),
        (
            b"admin.label.Get+a/b dom0 name dom0\0",
            b"2\0QubesInvalidLabelError\0\0Label must be in safe set: abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.\0",
        ),
        (
            b"admin.label.List+ dom0 name work\0",
            b"2\0ProtocolError\0\0expected destination to be AdminVM\0",
        ),
    ];
    for (request, reply) in cases {
        fx.expect(request, reply);
    }
}

#[test]
fn s1_3_percent_is_doubled() {
    let mut fx = Fixture::new();
    fx.expect(
        b"admin.vm.property.Get+100% dom0 name work\0",
        b"2\0QubesNoSuchPropertyError\0\0Invalid property '100%%' of work\0",
    );
}

#[test]
fn hostile_requests_get_clean_errors_and_change_nothing() {
    let mut fx = Fixture::new();
    let before = fx.snapshot();
    let long_id = "0x8086+".repeat(1500);
    let hostile: Vec<Vec<u8>> = vec![
        b"admin.vm.Create.AppVM+ dom0 name dom0\0name=a\x00b label=red".to_vec(),
        b"admin.vm.Create.AppVM+ dom0 name dom0\0name=\x01 label=red".to_vec(),
        b"admin.vm.device.denied.Add+ dom0 name work\0p0c03\x00\x01".to_vec(),
        b"admin.vm.device.denied.Add+ dom0 name work\0\xff\xfe".to_vec(),
        b"admin.vm.device.pci.Assign+dom0+../../etc+_ dom0 name work\0mode='required'".to_vec(),
        b"admin.vm.device.pci.Assign+dom0+00_14.0+_ dom0 name work\0mode='required\x00' _x='\x01'"
            .to_vec(),
        b"admin.vm.device.pci.Assign+dom0+00_14.0+_ dom0 name work\0mode='required' frontend_domain='../x'"
            .to_vec(),
        format!("admin.vm.device.pci.Assign+dom0+00_14.0+{long_id} dom0 name work\0mode='required'")
            .into_bytes(),
        format!("admin.vm.device.pci.Unassign+dom0+00_14.0+{long_id} dom0 name work\0").into_bytes(),
        b"admin.vm.device.pci.Unassign+dom0+\x01\x02+_ dom0 name work\0".to_vec(),
        b"admin.vm.device.pci.Detach+../..+00_14.0 dom0 name work\0".to_vec(),
        b"admin.vm.device.pci.Assigned+dom0 dom0 name work\0".to_vec(),
        b"admin.vm.device.pci.Set.assignment+dom0+00_14.0+_ dom0 name work\0required\x00".to_vec(),
        b"admin.vm.property.Set+kernelopts dom0 name work\0a\x00b".to_vec(),
        b"admin.vm.property.Set+memory dom0 name work\0\xff".to_vec(),
        b"admin.vm.feature.Set+x dom0 name work\0\x00".to_vec(),
        b"admin.vm.tag.Set+a\x01b dom0 name work\0".to_vec(),
        b"admin.label.Get+\x7f dom0 name dom0\0".to_vec(),
        b"admin.vm.Shutdown+force+force+force dom0 name work\0".to_vec(),
    ];
    for request in &hostile {
        let reply = fx.call(request);
        assert!(
            reply.starts_with(b"2\0"),
            "{:?} -> {:?}",
            String::from_utf8_lossy(request),
            String::from_utf8_lossy(&reply)
        );
        let nuls = reply.iter().filter(|b| **b == 0).count();
        assert_eq!(
            nuls,
            4,
            "one clean exception frame: {:?}",
            String::from_utf8_lossy(&reply)
        );
        assert!(reply.len() < 40_000, "bounded message");
    }
    assert_eq!(fx.snapshot(), before);
}
