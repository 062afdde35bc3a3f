//! Conformance: qubes and power (spec/admin-api.md §3.1, §3.2, §3.16,
//! §9.1–§9.6, §9.13), byte-exact, state-dependent values adapted to the
//! fixture (dom0, fedora-40, sys-net, work).

mod methods_common;

use methods_common::Fixture;

const LIST_HALTED: &[u8] = b"0\0dom0 class=AdminVM state=Running uuid=00000000-0000-0000-0000-000000000000\nfedora-40 class=TemplateVM state=Halted uuid=33333333-3333-3333-3333-333333333333\nsys-net class=AppVM state=Halted uuid=11111111-1111-1111-1111-111111111111\nwork class=AppVM state=Halted uuid=22222222-2222-2222-2222-222222222222\n";

#[test]
fn s3_1_s9_3_vm_list() {
    let mut fx = Fixture::new();
    fx.expect(b"admin.vm.List+ dom0 name dom0\0", LIST_HALTED);
    fx.expect(
        b"admin.vm.List+ dom0 name work\0",
        b"0\0work class=AppVM state=Halted uuid=22222222-2222-2222-2222-222222222222\n",
    );
    fx.ok(b"admin.vm.Start+ dom0 name work\0");
    // The netvm (default_netvm sys-net) was started first.
    fx.expect(
        b"admin.vm.List+ dom0 name dom0\0",
        b"0\0dom0 class=AdminVM state=Running uuid=00000000-0000-0000-0000-000000000000\nfedora-40 class=TemplateVM state=Halted uuid=33333333-3333-3333-3333-333333333333\nsys-net class=AppVM state=Running uuid=11111111-1111-1111-1111-111111111111\nwork class=AppVM state=Running uuid=22222222-2222-2222-2222-222222222222\n",
    );
    // A uuid destination.
    fx.expect(
        b"admin.vm.List+ dom0 name uuid:22222222-2222-2222-2222-222222222222\0",
        b"0\0work class=AppVM state=Running uuid=22222222-2222-2222-2222-222222222222\n",
    );
    fx.expect(
        b"admin.vm.List+x dom0 name dom0\0",
        b"2\0ProtocolError\0\0unexpected argument\0",
    );
}

#[test]
fn s9_1_names() {
    let mut fx = Fixture::new();
    fx.expect(
        b"admin.vm.List+ dom0 name 1bad\0",
        b"2\0QubesValueError\0\0VM name cannot start with hyphen, underscore, dot or numbers\0",
    );
    fx.expect(
        b"admin.vm.List+ dom0 name default\0",
        b"2\0QubesValueError\0\0VM name cannot be 'none' nor 'default'\0",
    );
    fx.expect(
        b"admin.vm.List+ dom0 name nosuch\0",
        b"2\0QubesVMNotFoundError\0\0No such domain: 'nosuch'\0",
    );
}

#[test]
fn s3_2_s9_13_current_state() {
    let mut fx = Fixture::new();
    fx.expect(
        b"admin.vm.CurrentState+ dom0 name fedora-40\0",
        b"0\0mem=0 mem_static_max=0 cputime=0 power_state=Halted",
    );
    fx.ok(b"admin.vm.Start+ dom0 name work\0");
    fx.ok(b"admin.vm.property.Set+maxmem dom0 name fedora-40\x004000");
    fx.ok(b"admin.vm.Kill+ dom0 name work\0");
    fx.ok(b"admin.vm.Start+ dom0 name work\0");
    fx.expect(
        b"admin.vm.CurrentState+ dom0 name work\0",
        b"0\0mem=409600 mem_static_max=4096000 cputime=0 power_state=Running",
    );
}

#[test]
fn s9_2_vmclass_list() {
    let mut fx = Fixture::new();
    fx.expect(
        b"admin.vmclass.List+ dom0 name dom0\0",
        b"0\0AppVM\nTemplateVM\nStandaloneVM\nAdminVM\nDispVM\n",
    );
}

#[test]
fn s9_4_create() {
    let mut fx = Fixture::new();
    fx.expect(
        b"admin.vm.Create.AppVM+fedora-40 dom0 name dom0\0name=work3 label=red",
        b"0\0",
    );
    assert!(fx.changed());
    assert_eq!(fx.events()[0].name, "domain-add");
    fx.expect(
        b"admin.vm.Create.AppVM+ dom0 name dom0\0name=work2 label=blue",
        b"0\0",
    );
    fx.expect(
        b"admin.vm.property.Get+template dom0 name work2\0",
        b"0\0default=False type=vm fedora-40",
    );
    fx.expect(
        b"admin.vm.tag.List+ dom0 name work2\0",
        b"0\0audiovm-dom0\ncreated-by-dom0\nguivm-dom0\n",
    );
    fx.expect(
        b"admin.vm.Create.TemplateVM+ dom0 name dom0\0name=tpl2 label=black",
        b"0\0",
    );
    fx.expect(
        b"admin.vm.Create.StandaloneVM+ dom0 name dom0\0name=sa label=purple",
        b"0\0",
    );
    let before = fx.snapshot();
    let refusals: &[(&[u8], &[u8])] = &[
        (
            b"admin.vm.Create.AppVM+fedora-40 dom0 name dom0\0name=work label=red",
            b"2\0QubesVMAlreadyExistsError\0\0Qube already exists: work\0",
        ),
        (
            b"admin.vm.Create.AppVM+nosuch dom0 name dom0\0name=x1 label=red",
            b"2\0QubesVMNotFoundError\0\0No such domain: 'nosuch'\0",
        ),
        (
            b"admin.vm.Create.StandaloneVM+fedora-40 dom0 name dom0\0name=x3 label=red",
            b"2\0ProtocolError\0\0StandaloneVM cannot be based on template\0",
        ),
        (
            b"admin.vm.Create.AppVM+ dom0 name dom0\0name=x1 label=nosuch",
            b"2\0ProtocolError\0\0Creation requested without key: label\0",
        ),
        (
            b"admin.vm.Create.AppVM+work dom0 name dom0\0name=x1 label=red",
            b"2\0QubesPropertyValueError\0\0wrong VM class: domains['work'] is of type AppVM and not TemplateVM\0",
        ),
        (
            b"admin.vm.Create.AppVM+ dom0 name dom0\0name=x1  label=red",
            b"2\0ProtocolError\0\0Invalid parameter: ''\0",
        ),
        (
            b"admin.vm.Create.AppVM+ dom0 name dom0\0name=x1 label=red pool=x",
            b"2\0ProtocolError\0\0Pool option specified but 'allow_pool' is False\0",
        ),
        (
            b"admin.vm.Create.AdminVM+ dom0 name dom0\0name=x1 label=red",
            b"2\0QubesPropertyValueError\0\0property 'qid' on AdminVM instance cannot be set\0",
        ),
        (
            b"admin.vm.Create.RemoteVM+ dom0 name dom0\0name=x1 label=red",
            b"2\0ProtocolError\0\0no such method: 'admin.vm.Create.RemoteVM'\0",
        ),
        (
            b"admin.vm.Create.AppVM+ dom0 name work\0name=x1 label=red",
            b"2\0ProtocolError\0\0expected destination to be AdminVM\0",
        ),
        // §9.5: no storage pools.
        (
            b"admin.vm.CreateInPool.AppVM+ dom0 name dom0\0name=x1 label=red pool=vm-pool",
            b"2\0QubesException\0\0Storage pools are not supported\0",
        ),
    ];
    for (request, reply) in refusals {
        fx.expect(request, reply);
    }
    assert_eq!(fx.snapshot(), before);
    fx.ok(b"admin.property.Reset+default_template dom0 name dom0\0");
    fx.expect(
        b"admin.vm.Create.AppVM+ dom0 name dom0\0name=x8 label=red",
        b"2\0QubesValueError\0\0Template for the qube not specified, nor default template set.\0",
    );
}

#[test]
fn s9_6_remove() {
    let mut fx = Fixture::new();
    fx.ok(b"admin.vm.Create.AppVM+ dom0 name dom0\0name=work2 label=blue");
    fx.expect(b"admin.vm.Remove+ dom0 name work2\0", b"0\0");
    assert_eq!(fx.events()[0].name, "domain-delete");
    fx.ok(b"admin.vm.Start+ dom0 name work\0");
    fx.expect(
        b"admin.vm.Remove+ dom0 name work\0",
        b"2\0QubesVMNotHaltedError\0\0Domain is not powered off: 'work'\0",
    );
    fx.expect(
        b"admin.vm.Remove+ dom0 name fedora-40\0",
        b"2\0QubesVMInUseError\0\0Domain is in use: 'fedora-40';  see 'journalctl -u qubesd -e' in dom0 for details\0",
    );
    fx.expect(
        b"admin.vm.Remove+ dom0 name dom0\0",
        b"2\0QubesVMInUseError\0\0'dom0' cannot be removed\0",
    );
    // A removed qube takes its assignments along.
    fx.ok(b"admin.vm.Kill+ dom0 name work\0");
    fx.ok(b"admin.vm.device.pci.Assign+dom0+00_14.0+_ dom0 name work\0mode='required'");
    fx.expect(b"admin.vm.Remove+ dom0 name work\0", b"0\0");
    fx.expect(
        b"admin.vm.List+ dom0 name work\0",
        b"2\0QubesVMNotFoundError\0\0No such domain: 'work'\0",
    );
}

#[test]
fn s9_13_start() {
    let mut fx = Fixture::new();
    fx.expect(b"admin.vm.Start+ dom0 name work\0", b"0\0");
    assert!(!fx.changed(), "a start changes no state file");
    let started: Vec<String> = fx.events().iter().map(|e| e.subject.clone()).collect();
    assert_eq!(started, ["sys-net", "work"], "netvm first");
    fx.expect(b"admin.vm.Start+ dom0 name work\0", b"0\0");
    assert!(fx.events().is_empty(), "already running: no-op");
    fx.expect(
        b"admin.vm.Start+ dom0 name dom0\0",
        b"2\0QubesVMNotHaltedError\0\0Cannot start Dom0 fake domain!\0",
    );
    fx.ok(b"admin.vm.Create.StandaloneVM+ dom0 name dom0\0name=standalone label=red");
    fx.ok(b"admin.vm.feature.Set+prohibit-start dom0 name standalone\0disabled for test");
    fx.expect(
        b"admin.vm.Start+ dom0 name standalone\0",
        b"2\0QubesException\0\0Qube start is prohibited. Rationale: disabled for test\0",
    );
    // The domain XML is rendered: a pvh qube with no kernel cannot boot.
    fx.ok(b"admin.vm.feature.Remove+prohibit-start dom0 name standalone\0");
    fx.ok(b"admin.vm.property.Set+kernel dom0 name standalone\0");
    fx.expect(
        b"admin.vm.Start+ dom0 name standalone\0",
        b"2\0QubesException\0\0Start failed: qube standalone: virt_mode pvh needs a kernel: set the qube's kernel or use virt_mode hvm\0",
    );
}

#[test]
fn s5_2_start_with_pci() {
    let mut fx = Fixture::new();
    // A required device that is not present.
    fx.ok(b"admin.vm.device.pci.Assign+dom0+00_1e.0+_ dom0 name work\0mode='required'");
    fx.expect(
        b"admin.vm.Start+ dom0 name work\0",
        b"2\0QubesException\0\0Pci device dom0:00_1e.0:* not available: device not present\0",
    );
    fx.ok(b"admin.vm.device.pci.Unassign+dom0+00_1e.0+_ dom0 name work\0");
    // M5: one device, two qubes; the second start names the holder.
    fx.start_work_holding_the_xhci();
    fx.expect(
        b"admin.vm.Start+ dom0 name sys-net\0",
        b"2\0QubesException\0\0Cannot start sys-net: pci device 00_14.0 (0000:00:14.0) is in use by work, which is running; shut work down first\0",
    );
    // M12: pvh is refused while PCI devices are assigned.
    fx.expect(
        b"admin.vm.property.Set+virt_mode dom0 name sys-net\0pvh",
        b"2\0QubesPropertyValueError\0\0pvh mode can't be set if pci devices are assigned\0",
    );
    // The sim backend stored the domain XML with the hostdev.
    let xml = std::fs::read_to_string(fx.hv.xml_path(&"work".parse().unwrap())).unwrap();
    assert!(xml.contains("<hostdev"), "{xml}");
    assert!(xml.contains("managed=\"no\""), "{xml}");
}

#[test]
fn s9_13_shutdown_kill_pause() {
    let mut fx = Fixture::new();
    fx.expect(
        b"admin.vm.Shutdown+ dom0 name work\0",
        b"2\0QubesVMNotStartedError\0\0Domain is powered off: 'work'\0",
    );
    fx.ok(b"admin.vm.Start+ dom0 name work\0");
    fx.expect(
        b"admin.vm.Shutdown+ dom0 name sys-net\0",
        b"2\0QubesVMInUseError\0\0There are other VMs connected to this VM: work\0",
    );
    fx.expect(
        b"admin.vm.Shutdown+bogus dom0 name work\0",
        b"2\0ProtocolError\0\0Argument must match: force, wait\0",
    );
    fx.expect(b"admin.vm.Shutdown+force dom0 name sys-net\0", b"0\0");
    fx.expect(b"admin.vm.Shutdown+wait dom0 name work\0", b"0\0");
    fx.ok(b"admin.vm.Start+ dom0 name work\0");
    fx.expect(b"admin.vm.Shutdown+force+wait dom0 name work\0", b"0\0");
    fx.ok(b"admin.vm.Start+ dom0 name work\0");
    fx.expect(b"admin.vm.Kill+ dom0 name work\0", b"0\0");
    fx.expect(
        b"admin.vm.Kill+ dom0 name work\0",
        b"2\0QubesVMNotStartedError\0\0Domain is powered off: 'work'\0",
    );
    fx.expect(
        b"admin.vm.Kill+ dom0 name dom0\0",
        b"2\0QubesVMError\0\0Cannot kill Dom0 fake domain!\0",
    );
    fx.expect(
        b"admin.vm.Shutdown+ dom0 name dom0\0",
        b"2\0QubesVMError\0\0Cannot shutdown Dom0 fake domain!\0",
    );
    fx.expect(
        b"admin.vm.Pause+ dom0 name fedora-40\0",
        b"2\0QubesVMNotRunningError\0\0Domain not running (either powered off or paused): 'fedora-40'\0",
    );
    fx.expect(
        b"admin.vm.Pause+ dom0 name dom0\0",
        b"2\0QubesVMError\0\0Cannot pause Dom0 fake domain!\0",
    );
    fx.expect(
        b"admin.vm.Unpause+ dom0 name work\0",
        b"2\0QubesVMNotPausedError\0\0Domain is not paused: 'work'\0",
    );
    fx.expect(
        b"admin.vm.Unpause+ dom0 name dom0\0",
        b"2\0QubesVMNotPausedError\0\0Domain is not paused: 'dom0'\0",
    );
}
