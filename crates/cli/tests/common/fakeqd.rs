//! A fake qubesd on a temporary socket: a small in-memory model answering
//! the Qubes methods the tools call, recording every request. The binaries
//! reach it through `QPCI_SOCKET`, so output, exit codes and request
//! sequences are checked through the real client code.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use qpci_api::{RawRequest, Reply};

/// One qube of the model.
#[derive(Clone, Default)]
pub struct Vm {
    pub class: String,
    pub state: String,
    /// name → (default, type, value)
    pub props: BTreeMap<String, (bool, String, String)>,
    /// `Assigned` lines (without the trailing LF).
    pub assigned: Vec<String>,
    /// `Attached` lines.
    pub attached: Vec<String>,
    pub features: BTreeMap<String, String>,
}

/// The whole model.
#[derive(Clone, Default)]
pub struct Model {
    pub vms: BTreeMap<String, Vm>,
    /// `Available` reply of dom0.
    pub available: String,
    /// Replies of `qpci.*` methods; absent ones are "no such method".
    pub ext: BTreeMap<String, String>,
}

fn exc(class: &str, msg: &str) -> Reply {
    Reply::exception(class, msg)
}

const LABELS: [&str; 8] = [
    "red", "orange", "yellow", "green", "gray", "blue", "purple", "black",
];

pub fn prop(default: bool, ty: &str, value: &str) -> (bool, String, String) {
    (default, ty.to_owned(), value.to_owned())
}

impl Model {
    /// Adds a qube with a few properties.
    pub fn add(&mut self, name: &str, class: &str, state: &str) -> &mut Vm {
        let mut vm = Vm {
            class: class.into(),
            state: state.into(),
            ..Vm::default()
        };
        vm.props.insert(
            "label".into(),
            prop(
                false,
                "label",
                if class == "AdminVM" { "black" } else { "red" },
            ),
        );
        vm.props.insert("name".into(), prop(false, "str", name));
        vm.props.insert("klass".into(), prop(true, "str", class));
        if class != "AdminVM" {
            vm.props.insert("memory".into(), prop(true, "int", "400"));
            vm.props.insert("maxmem".into(), prop(true, "int", "4000"));
            vm.props
                .insert("virt_mode".into(), prop(true, "str", "pvh"));
            vm.props.insert("netvm".into(), prop(true, "vm", ""));
            vm.props
                .insert("devices_denied".into(), prop(true, "str", ""));
            vm.props
                .insert("backup_timestamp".into(), prop(true, "int", ""));
            vm.props
                .insert("provides_network".into(), prop(true, "bool", "False"));
        }
        self.vms.insert(name.into(), vm);
        self.vms.get_mut(name).unwrap()
    }

    fn handle(&mut self, r: &RawRequest) -> Reply {
        let m = r.method.as_str();
        let dest = r.dest.as_str();
        if m.starts_with("qpci.") {
            return match self.ext.get(m) {
                Some(reply) => Reply::ok(reply.clone()),
                None => exc("ProtocolError", &format!("no such method: '{m}'")),
            };
        }
        if !self.vms.contains_key(dest) {
            return exc("QubesVMNotFoundError", &format!("No such domain: '{dest}'"));
        }
        let payload = String::from_utf8_lossy(&r.payload).into_owned();
        match m {
            "admin.vm.List" => {
                let mut names: Vec<&String> = self.vms.keys().collect();
                names.sort_by_key(|n| (*n != "dom0", (*n).clone()));
                Reply::ok(
                    names
                        .iter()
                        .map(|n| {
                            let v = &self.vms[*n];
                            format!("{n} class={} state={} uuid=0\n", v.class, v.state)
                        })
                        .collect::<String>(),
                )
            }
            "admin.vm.CurrentState" => {
                let v = &self.vms[dest];
                let mem = if v.state == "Halted" { 0 } else { 409600 };
                Reply::ok(format!(
                    "mem={mem} mem_static_max=0 cputime=0 power_state={}",
                    v.state
                ))
            }
            "admin.deviceclass.List" => Reply::ok("pci\nblock\n"),
            "admin.vmclass.List" => Reply::ok("AppVM\nTemplateVM\nStandaloneVM\nAdminVM\nDispVM\n"),
            "admin.label.List" => {
                Reply::ok(LABELS.iter().map(|l| format!("{l}\n")).collect::<String>())
            }
            "admin.label.Index" => match LABELS.iter().position(|l| *l == r.arg) {
                Some(i) => Reply::ok((i + 1).to_string()),
                None => exc(
                    "QubesLabelNotFoundError",
                    &format!("Label does not exist: {}", r.arg),
                ),
            },
            "admin.property.Get" => Reply::ok("default=True type=vm "),
            "admin.vm.feature.Get" => match self.vms[dest].features.get(&r.arg) {
                Some(v) => Reply::ok(v.clone()),
                None => exc(
                    "QubesFeatureNotFoundError",
                    &format!("Feature not set for domain {dest}: {}", r.arg),
                ),
            },
            "admin.vm.tag.List" => Reply::ok(""),
            "admin.vm.device.pci.Available" => Reply::ok(if dest == "dom0" {
                self.available.clone()
            } else {
                String::new()
            }),
            "admin.vm.device.pci.Assigned" => Reply::ok(lines(&self.vms[dest].assigned)),
            "admin.vm.device.pci.Attached" => Reply::ok(lines(&self.vms[dest].attached)),
            "admin.vm.device.pci.Assign" => {
                let head = head_of(&r.arg);
                let vm = self.vms.get_mut(dest).unwrap();
                if vm
                    .assigned
                    .iter()
                    .any(|l| l.split(' ').next() == Some(head.as_str()))
                {
                    let text = head.replacen('+', ":", 1);
                    return exc(
                        "DeviceAlreadyAssigned",
                        &format!("'pci device {text} already assigned to {dest}'"),
                    );
                }
                vm.assigned.push(format!("{head} {payload}"));
                Reply::ok("")
            }
            "admin.vm.device.pci.Unassign" => {
                let head = head_of(&r.arg);
                let vm = self.vms.get_mut(dest).unwrap();
                let before = vm.assigned.len();
                vm.assigned
                    .retain(|l| l.split(' ').next() != Some(head.as_str()));
                if vm.assigned.len() == before {
                    let text = head.replacen('+', ":", 1);
                    return exc(
                        "DeviceNotAssigned",
                        &format!("'pci device {text} not assigned to {dest}'"),
                    );
                }
                Reply::ok("")
            }
            "admin.vm.device.pci.Detach" => {
                let port = r.arg.split('+').nth(1).unwrap_or_default().to_owned();
                let vm = self.vms.get_mut(dest).unwrap();
                let before = vm.attached.len();
                vm.attached
                    .retain(|l| !l.contains(&format!("port_id='{port}'")));
                if vm.attached.len() == before {
                    return exc(
                        "DeviceNotAssigned",
                        &format!("'pci device {port} not attached to {dest}'"),
                    );
                }
                Reply::ok("")
            }
            "admin.vm.property.List" => Reply::ok(
                self.vms[dest]
                    .props
                    .keys()
                    .map(|k| format!("{k}\n"))
                    .collect::<String>(),
            ),
            "admin.vm.property.GetAll" => Reply::ok(
                self.vms[dest]
                    .props
                    .iter()
                    .map(|(k, (d, t, v))| format!("{k} default={} type={t} {v}\n", py(*d)))
                    .collect::<String>(),
            ),
            "admin.vm.property.Get" => match self.vms[dest].props.get(&r.arg) {
                Some((d, t, v)) => Reply::ok(format!("default={} type={t} {v}", py(*d))),
                None => no_prop(&r.arg, dest),
            },
            "admin.vm.property.Help" => match self.vms[dest].props.get(&r.arg) {
                Some(_) => Reply::ok(format!("Help for {}.", r.arg)),
                None => no_prop(&r.arg, dest),
            },
            "admin.vm.property.Set" => self.set_prop(dest, &r.arg, &payload),
            "admin.vm.property.Reset" => {
                match self.vms.get_mut(dest).unwrap().props.get_mut(&r.arg) {
                    Some(p) => {
                        p.0 = true;
                        Reply::ok("")
                    }
                    None => no_prop(&r.arg, dest),
                }
            }
            m if m.starts_with("admin.vm.Create.") => {
                self.create(&m["admin.vm.Create.".len()..], &r.arg, &payload)
            }
            "admin.vm.Remove" => {
                if dest == "dom0" {
                    return exc("QubesVMInUseError", "'dom0' cannot be removed");
                }
                if self.vms[dest].state != "Halted" {
                    return exc(
                        "QubesVMNotHaltedError",
                        &format!("Domain is not powered off: '{dest}'"),
                    );
                }
                let used = self
                    .vms
                    .values()
                    .any(|v| v.props.get("template").is_some_and(|t| t.2 == dest && !t.0));
                if used {
                    return exc(
                        "QubesVMInUseError",
                        &format!(
                            "Domain is in use: '{dest}';  see 'journalctl -u qubesd -e' in dom0 for details"
                        ),
                    );
                }
                self.vms.remove(dest);
                Reply::ok("")
            }
            "admin.vm.Start" => {
                if dest == "dom0" {
                    return exc("QubesVMNotHaltedError", "Cannot start Dom0 fake domain!");
                }
                if let Some(why) = self.vms[dest].features.get("prohibit-start") {
                    return exc(
                        "QubesException",
                        &format!("Qube start is prohibited. Rationale: {why}"),
                    );
                }
                self.vms.get_mut(dest).unwrap().state = "Running".into();
                Reply::ok("")
            }
            "admin.vm.Shutdown" => {
                if dest == "dom0" {
                    return exc("QubesVMError", "Cannot shutdown Dom0 fake domain!");
                }
                if self.vms[dest].state == "Halted" {
                    return exc(
                        "QubesVMNotStartedError",
                        &format!("Domain is powered off: '{dest}'"),
                    );
                }
                let users: Vec<String> = self
                    .vms
                    .iter()
                    .filter(|(_, v)| {
                        v.state == "Running" && v.props.get("netvm").is_some_and(|n| n.2 == dest)
                    })
                    .map(|(n, _)| n.clone())
                    .collect();
                if !users.is_empty() && !r.arg.contains("force") {
                    return exc(
                        "QubesVMInUseError",
                        &format!(
                            "There are other VMs connected to this VM: {}",
                            users.join(", ")
                        ),
                    );
                }
                let vm = self.vms.get_mut(dest).unwrap();
                vm.state = "Halted".into();
                vm.attached.clear();
                Reply::ok("")
            }
            "admin.vm.Kill" => {
                if dest == "dom0" {
                    return exc("QubesVMError", "Cannot kill Dom0 fake domain!");
                }
                let vm = self.vms.get_mut(dest).unwrap();
                if vm.state == "Halted" {
                    return exc(
                        "QubesVMNotStartedError",
                        &format!("Domain is powered off: '{dest}'"),
                    );
                }
                vm.state = "Halted".into();
                vm.attached.clear();
                Reply::ok("")
            }
            other => exc("ProtocolError", &format!("no such method: '{other}'")),
        }
    }

    fn set_prop(&mut self, dest: &str, name: &str, value: &str) -> Reply {
        let Some(p) = self.vms.get_mut(dest).unwrap().props.get_mut(name) else {
            return no_prop(name, dest);
        };
        if p.1 == "int" && value.parse::<i64>().is_err() {
            return exc("QubesValueError", "Failed to parse property value as int");
        }
        if name == "memory" && value.parse::<i64>().is_ok_and(|v| v <= 0) {
            return exc("QubesPropertyValueError", "memory must be positive");
        }
        if name == "maxmem" && value == "13" {
            // Stands for a server that drops the connection.
            return exc("__EMPTY__", "");
        }
        *p = (false, p.1.clone(), value.to_owned());
        Reply::ok("")
    }

    fn create(&mut self, class: &str, template: &str, payload: &str) -> Reply {
        if !["AppVM", "TemplateVM", "StandaloneVM"].contains(&class) {
            return exc(
                "ProtocolError",
                &format!("no such method: 'admin.vm.Create.{class}'"),
            );
        }
        let kv: BTreeMap<&str, &str> = payload
            .split(' ')
            .filter_map(|t| t.split_once('='))
            .collect();
        let name = kv.get("name").copied().unwrap_or_default();
        if self.vms.contains_key(name) {
            return exc(
                "QubesVMAlreadyExistsError",
                &format!("Qube already exists: {name}"),
            );
        }
        if !template.is_empty() && !self.vms.contains_key(template) {
            return exc(
                "QubesVMNotFoundError",
                &format!("No such domain: '{template}'"),
            );
        }
        let label = kv.get("label").copied().unwrap_or("red").to_owned();
        let vm = self.add(name, class, "Halted");
        vm.props
            .insert("label".into(), prop(false, "label", &label));
        if !template.is_empty() {
            vm.props
                .insert("template".into(), prop(false, "vm", template));
        }
        Reply::ok("")
    }
}

fn py(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

fn no_prop(name: &str, dest: &str) -> Reply {
    exc(
        "QubesNoSuchPropertyError",
        &format!("Invalid property '{name}' of {dest}"),
    )
}

fn lines(list: &[String]) -> String {
    let mut sorted = list.to_vec();
    sorted.sort();
    sorted.iter().map(|l| format!("{l}\n")).collect()
}

/// `dom0+00_14.0+0x8086+0xa0ed++p0c0330` → the list-line head
/// `dom0+00_14.0:0x8086:0xa0ed::p0c0330`.
fn head_of(qarg: &str) -> String {
    let (backend, rest) = qarg.split_once('+').unwrap_or((qarg, ""));
    let (port, id) = rest.split_once('+').unwrap_or((rest, "_"));
    let id = id.replace('+', ":").replace("_______", "?******");
    let id = if id == "_" { "*".to_owned() } else { id };
    let port = if port == "_" { "*" } else { port };
    format!("{backend}+{port}:{id}")
}

/// The fake daemon: a socket served by a background thread.
pub struct FakeQd {
    _dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub requests: Arc<Mutex<Vec<String>>>,
    pub model: Arc<Mutex<Model>>,
}

impl FakeQd {
    /// Serves `model` on a fresh socket.
    pub fn start(model: Model) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("qubesd.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let model = Arc::new(Mutex::new(model));
        let (req, mdl) = (requests.clone(), model.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buf = Vec::new();
                if stream.read_to_end(&mut buf).is_err() || buf.is_empty() {
                    continue;
                }
                let Ok(r) = RawRequest::decode(&buf) else {
                    continue;
                };
                let payload = String::from_utf8_lossy(&r.payload);
                let line = if payload.is_empty() {
                    format!("{}+{} {}", r.method, r.arg, r.dest)
                } else {
                    format!("{}+{} {} {payload}", r.method, r.arg, r.dest)
                };
                req.lock().unwrap().push(line);
                let reply = mdl.lock().unwrap().handle(&r);
                if matches!(&reply, Reply::Exception(e) if e.class == "__EMPTY__") {
                    continue;
                }
                let _ = stream.write_all(&reply.encode());
            }
        });
        Self {
            _dir: dir,
            socket,
            requests,
            model,
        }
    }

    /// The requests so far, then forgets them.
    pub fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }

    /// A tool binary pointed at this daemon.
    pub fn cmd(&self, bin: &str, args: &[&str]) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::new(super::bin_path(bin));
        cmd.env("QPCI_SOCKET", &self.socket).args(args);
        cmd.timeout(std::time::Duration::from_secs(20));
        cmd
    }
}

pub const XHCI: &str = "0x8086:0xa0ed::p0c0330";
pub const WIFI: &str = "0x8086:0xa0f0::p028000";

/// The `Available` line of a device.
pub fn available_line(port: &str, id: &str, sbdf: &str, vendor: &str, product: &str) -> String {
    let interfaces = id.rsplit(':').next().unwrap();
    format!(
        "{port}:{id} device_id='{id}' port_id='{port}' devclass='pci' backend_domain='dom0' vendor='{vendor}' product='{product}' interfaces='{interfaces}' _sbdf='{sbdf}'\n"
    )
}

/// An `Assigned`/`Attached` line.
pub fn assignment_line(vm: &str, port: &str, id: &str, options: &str) -> String {
    format!(
        "dom0+{port}:{id} device_id='{id}' port_id='{port}' devclass='pci' backend_domain='dom0' mode='required' frontend_domain='{vm}'{options}"
    )
}

/// The laptop of spec/qvm-tools.md §2.5: four devices, sys-usb running
/// with its controller, sys-net halted with two assignments.
pub fn laptop() -> Model {
    let mut m = Model::default();
    m.add("dom0", "AdminVM", "Running");
    m.add("work", "AppVM", "Halted");
    m.add("sys-usb", "AppVM", "Running");
    m.add("sys-net", "AppVM", "Halted")
        .props
        .insert("provides_network".into(), prop(false, "bool", "True"));
    m.available = [
        available_line(
            "00_02.0",
            "0x8086:0x9a49::p030000",
            "0000:00:02.0",
            "Intel Corporation",
            "TigerLake-LP GT2 [Iris Xe Graphics]",
        ),
        available_line(
            "00_14.0",
            XHCI,
            "0000:00:14.0",
            "Intel Corporation",
            "Tiger Lake-LP USB 3.2 Gen 2x1 xHCI Host Controller",
        ),
        available_line(
            "00_14.3",
            WIFI,
            "0000:00:14.3",
            "Intel Corporation",
            "Wi-Fi 6 AX201",
        ),
        available_line(
            "00_1c.0-00_00.0",
            "0x10ec:0x8168::p020000",
            "0000:aa:00.0",
            "Realtek Semiconductor Co., Ltd.",
            "RTL8111/8168/8411 PCI Express Gigabit Ethernet Controller",
        ),
    ]
    .concat();
    let usb = m.vms.get_mut("sys-usb").unwrap();
    usb.assigned.push(assignment_line(
        "sys-usb",
        "00_14.0",
        XHCI,
        " _no-strict-reset='True'",
    ));
    usb.attached.push(assignment_line(
        "sys-usb",
        "00_14.0",
        XHCI,
        " _no-strict-reset='True'",
    ));
    let net = m.vms.get_mut("sys-net").unwrap();
    net.assigned
        .push(assignment_line("sys-net", "00_14.3", WIFI, ""));
    net.assigned.push(
        "dom0+00_1c.0-00_00.0:* device_id='*' port_id='00_1c.0-00_00.0' devclass='pci' backend_domain='dom0' mode='required' frontend_domain='sys-net' _permissive='True'".into(),
    );
    m
}
