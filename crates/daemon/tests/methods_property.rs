//! Conformance: properties (spec/admin-api.md §3.3, §3.4, §9.7–§9.9, §9.14),
//! byte-exact, values adapted to the fixture.

mod methods_common;

use methods_common::Fixture;

#[test]
fn s3_3_get_and_get_all() {
    let mut fx = Fixture::new();
    fx.expect(
        b"admin.vm.property.Get+devices_denied dom0 name work\0",
        b"0\0default=True type=str ",
    );
    fx.expect(
        b"admin.vm.property.Get+nosuch dom0 name work\0",
        b"2\0QubesNoSuchPropertyError\0\0Invalid property 'nosuch' of work\0",
    );
    let all = String::from_utf8(fx.ok(b"admin.vm.property.GetAll+ dom0 name work\0")).unwrap();
    for line in [
        "devices_denied default=True type=str \n",
        "label default=False type=label blue\n",
        "memory default=True type=int 400\n",
        "name default=False type=str work\n",
        "qid default=False type=int 3\n",
        "uuid default=False type=str 22222222-2222-2222-2222-222222222222\n",
        "virt_mode default=True type=str pvh\n",
        "netvm default=True type=vm sys-net\n",
        "template default=False type=vm fedora-40\n",
        "kernel default=True type=str 6.6.48-1.fc37\n",
    ] {
        assert!(all.contains(line), "{line:?} in {all}");
    }
    let names = String::from_utf8(fx.ok(b"admin.vm.property.List+ dom0 name work\0")).unwrap();
    assert_eq!(
        all.lines().count(),
        names.lines().count(),
        "GetAll has one line per property of List"
    );
    assert!(
        all.lines()
            .zip(names.lines())
            .all(|(l, n)| l.starts_with(&format!("{n} ")))
    );
}

#[test]
fn s9_7_list_of_dom0() {
    let mut fx = Fixture::new();
    fx.expect(
        b"admin.vm.property.List+ dom0 name dom0\0",
        b"0\0devices_denied\nicon\ninclude_in_backups\nkeyboard_layout\nklass\nlabel\nmaxmem\nname\nqid\nupdateable\nuuid\ndefault_dispvm\n",
    );
    fx.expect(
        b"admin.vm.property.Get+memory dom0 name dom0\0",
        b"2\0QubesNoSuchPropertyError\0\0Invalid property 'memory' of dom0\0",
    );
}

#[test]
fn s9_7_get_examples() {
    let mut fx = Fixture::new();
    let cases: &[(&[u8], &[u8])] = &[
        (
            b"admin.vm.property.Get+memory dom0 name work\0",
            b"0\0default=True type=int 400",
        ),
        (
            b"admin.vm.property.Get+label dom0 name work\0",
            b"0\0default=False type=label blue",
        ),
        (
            b"admin.vm.property.Get+netvm dom0 name work\0",
            b"0\0default=True type=vm sys-net",
        ),
        (
            b"admin.vm.property.Get+netvm dom0 name fedora-40\0",
            b"0\0default=True type=vm ",
        ),
        (
            b"admin.vm.property.Get+template dom0 name work\0",
            b"0\0default=False type=vm fedora-40",
        ),
        (
            b"admin.vm.property.Get+virt_mode dom0 name work\0",
            b"0\0default=True type=str pvh",
        ),
        (
            b"admin.vm.property.Get+backup_timestamp dom0 name work\0",
            b"0\0default=True type=int ",
        ),
        (
            b"admin.vm.property.GetDefault+memory dom0 name work\0",
            b"0\0type=int 400",
        ),
        (
            b"admin.vm.property.GetDefault+netvm dom0 name work\0",
            b"0\0type=vm sys-net",
        ),
        (b"admin.vm.property.GetDefault+label dom0 name work\0", b"0\0"),
        (
            b"admin.vm.property.GetDefault+backup_timestamp dom0 name work\0",
            b"0\0type=int ",
        ),
        (
            b"admin.vm.property.Help+memory dom0 name work\0",
            b"0\0Memory currently available for this VM. TemplateBasedVMs use its template's value by default.",
        ),
    ];
    for (request, reply) in cases {
        fx.expect(request, reply);
    }
}

#[test]
fn s3_4_s9_7_set_and_reset() {
    let mut fx = Fixture::new();
    let cases: &[(&[u8], &[u8])] = &[
        (b"admin.vm.property.Set+memory dom0 name work\x00800", b"0\0"),
        (
            b"admin.vm.property.Set+memory dom0 name work\0-1",
            b"2\0QubesPropertyValueError\0\0memory must be positive\0",
        ),
        (
            b"admin.vm.property.Set+memory dom0 name work\0abc",
            b"2\0QubesValueError\0\0Failed to parse property value as int\0",
        ),
        (b"admin.vm.property.Set+netvm dom0 name work\0", b"0\0"),
        (b"admin.vm.property.Set+label dom0 name work\0green", b"0\0"),
        (b"admin.vm.property.Set+label dom0 name work\x003", b"0\0"),
        (
            b"admin.vm.property.Set+xid dom0 name work\x005",
            b"2\0QubesPropertyValueError\0\0property 'xid' on AppVM instance cannot be set\0",
        ),
        (b"admin.vm.property.Reset+memory dom0 name work\0", b"0\0"),
        (
            b"admin.vm.property.Reset+template dom0 name work\0",
            b"2\0QubesValueError\0\0Cannot unset template. You can set it to the current default (fedora-40) instead\0",
        ),
        (b"admin.vm.property.Set+virt_mode dom0 name work\0hvm", b"0\0"),
        (b"admin.vm.property.Reset+maxmem dom0 name work\0", b"0\0"),
        (
            b"admin.vm.property.Set+qid dom0 name work\x009",
            b"2\0QubesPropertyValueError\0\0property 'qid' is write-once and already set\0",
        ),
    ];
    for (request, reply) in cases {
        fx.expect(request, reply);
    }
    fx.expect(
        b"admin.vm.property.Get+label dom0 name work\0",
        b"0\0default=False type=label yellow",
    );
    fx.ok(b"admin.vm.property.Set+memory dom0 name work\x00800");
    assert!(fx.changed());
    let ev = &fx.events()[0];
    assert_eq!(ev.name, "property-set:memory");
    assert_eq!(
        ev.kwargs,
        vec![
            ("name".to_owned(), "memory".to_owned()),
            ("newvalue".to_owned(), "800".to_owned()),
        ]
    );
}

#[test]
fn s3_4_pci_and_running_rules() {
    let mut fx = Fixture::new();
    fx.ok(b"admin.vm.device.pci.Assign+dom0+00_14.0+_ dom0 name work\0mode='required'");
    // M12: defaults with PCI.
    fx.expect(
        b"admin.vm.property.Get+virt_mode dom0 name work\0",
        b"0\0default=True type=str hvm",
    );
    fx.expect(
        b"admin.vm.property.Get+maxmem dom0 name work\0",
        b"0\0default=True type=int 0",
    );
    fx.expect(
        b"admin.vm.property.Set+virt_mode dom0 name work\0pvh",
        b"2\0QubesPropertyValueError\0\0pvh mode can't be set if pci devices are assigned\0",
    );
    fx.ok(b"admin.vm.property.Set+netvm dom0 name work\0");
    fx.ok(b"admin.vm.Start+ dom0 name work\0");
    fx.expect(
        b"admin.vm.property.Set+maxmem dom0 name work\x004000",
        b"2\0QubesVMNotHaltedError\0\0Can't change maxmem of VM work, because it isn't Halted and memory hotplug is forbidden\0",
    );
}

#[test]
fn s9_7_get_all_escapes() {
    let mut fx = Fixture::new();
    fx.ok(b"admin.vm.property.Set+kernelopts dom0 name work\0a\\b\nc");
    fx.expect(
        b"admin.vm.property.Get+kernelopts dom0 name work\0",
        b"0\0default=False type=str a\\b\nc",
    );
    let all = fx.ok(b"admin.vm.property.GetAll+ dom0 name work\0");
    let needle: &[u8] = b"\nkernelopts default=False type=str a\\\\b\\nc\n";
    assert!(
        all.windows(needle.len()).any(|w| w == needle),
        "{}",
        String::from_utf8_lossy(&all)
    );
    fx.expect(
        b"admin.vm.property.Set+kernelopts dom0 name work\0a\rb",
        b"2\0QubesValueError\0\0Invalid characters in property value\0",
    );
}

#[test]
fn s9_9_global_properties() {
    let mut fx = Fixture::new();
    let cases: &[(&[u8], &[u8])] = &[
        (
            b"admin.property.Get+default_template dom0 name dom0\0",
            b"0\0default=False type=vm fedora-40",
        ),
        (
            b"admin.property.Set+default_template dom0 name dom0\0work",
            b"2\0QubesPropertyValueError\0\0wrong VM class: domains['work'] is of type AppVM and not TemplateVM\0",
        ),
        (
            b"admin.property.Set+nosuch dom0 name dom0\0x",
            b"2\0QubesNoSuchPropertyError\0\0Invalid property 'nosuch' of Qubes\0",
        ),
        (
            b"admin.property.GetDefault+default_netvm dom0 name dom0\0",
            b"0\0type=vm ",
        ),
        (
            b"admin.property.Get+clockvm dom0 name work\0",
            b"2\0ProtocolError\0\0expected destination to be AdminVM\0",
        ),
        (b"admin.property.Set+default_netvm dom0 name dom0\0", b"0\0"),
        (b"admin.property.Reset+default_netvm dom0 name dom0\0", b"0\0"),
    ];
    for (request, reply) in cases {
        fx.expect(request, reply);
    }
    let names = String::from_utf8(fx.ok(b"admin.property.List+ dom0 name dom0\0")).unwrap();
    let all = String::from_utf8(fx.ok(b"admin.property.GetAll+ dom0 name dom0\0")).unwrap();
    assert!(names.lines().any(|n| n == "default_template"));
    assert!(
        all.contains("default_template default=False type=vm fedora-40\n"),
        "{all}"
    );
    assert_eq!(names.lines().count(), all.lines().count());
}
