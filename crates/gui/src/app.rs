//! The dialog's view: a thin layer drawing a [`Model`] with egui and turning
//! clicks and keys into model calls. Everything it decides is in the model.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use eframe::egui::{self, Color32, Key as EKey, RichText};
use qpci_api::{Client, Device, Flavour};

use crate::data::{self, Fatal};
use crate::events::Watcher;
use crate::model::{
    Model, NO_STRICT_RESET_WARNING, Options, PERMISSIVE_WARNING, PropEdit, Selected,
};

/// The tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    /// Name, class, state.
    Basic,
    /// Memory, virt mode, vcpus, kernel.
    Advanced,
    /// PCI devices.
    Devices,
}

impl std::str::FromStr for Tab {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "basic" => Ok(Self::Basic),
            "advanced" => Ok(Self::Advanced),
            "devices" => Ok(Self::Devices),
            other => Err(format!(
                "unknown tab '{other}': expected basic, advanced or devices"
            )),
        }
    }
}

/// Which list the keyboard acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Available,
    Selected,
}

/// The "Configure strict reset" dialog of one selected device.
#[derive(Debug, Clone)]
struct StrictDialog {
    key: crate::model::Key,
    options: Options,
    saved: Option<Options>,
}

/// The whole dialog.
pub struct App {
    client: Option<Client>,
    qube: String,
    tab: Tab,
    loaded: Result<Model, Fatal>,
    filter: String,
    pick_available: Option<String>,
    pick_selected: Option<crate::model::Key>,
    side: Side,
    strict: Option<StrictDialog>,
    notice: Option<String>,
    refresh: Arc<AtomicBool>,
    watcher: Option<Watcher>,
    /// Set when OK succeeded or Cancel was pressed: the window should close.
    pub closed: bool,
}

impl App {
    /// A dialog for `qube` over `client` (`Err`: no daemon could be found),
    /// loaded at once.
    pub fn new(client: Result<Client, Fatal>, qube: &str, tab: Tab) -> Self {
        let (client, loaded) = match client {
            Ok(c) => {
                let loaded = data::load(&c, qube).map(Model::new);
                (Some(c), loaded)
            }
            Err(f) => (None, Err(f)),
        };
        Self {
            client,
            qube: qube.to_owned(),
            tab,
            loaded,
            filter: String::new(),
            pick_available: None,
            pick_selected: None,
            side: Side::Available,
            strict: None,
            notice: None,
            refresh: Arc::new(AtomicBool::new(false)),
            watcher: None,
            closed: false,
        }
    }

    /// Starts refreshing on `admin.Events`; `repaint` wakes the UI.
    pub fn watch_events(&mut self, repaint: impl Fn() + Send + 'static) {
        if let Some(c) = &self.client {
            let flag = Arc::clone(&self.refresh);
            self.watcher = Some(crate::events::watch(c.path().to_owned(), move || {
                flag.store(true, Ordering::Relaxed);
                repaint();
            }));
        }
    }

    /// The model, when the qube is loaded.
    pub fn model(&self) -> Option<&Model> {
        self.loaded.as_ref().ok()
    }

    /// Reloads from qpcid, keeping the edits.
    pub fn reload(&mut self) {
        let Some(client) = &self.client else {
            return;
        };
        match (data::load(client, &self.qube), &mut self.loaded) {
            (Ok(base), Ok(model)) => model.rebase(base),
            (Ok(base), loaded) => *loaded = Ok(Model::new(base)),
            (Err(f), loaded) => *loaded = Err(f),
        }
    }

    /// Draws the dialog.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        if self.refresh.swap(false, Ordering::Relaxed) {
            self.reload();
        }
        if let Err(fatal) = &self.loaded {
            let fatal = fatal.clone();
            self.show_fatal(ui, &fatal);
            return;
        }
        egui::Panel::top("tabs").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.heading(format!("Settings: {}", self.qube));
                ui.separator();
                for (tab, name) in [
                    (Tab::Basic, "Basic"),
                    (Tab::Advanced, "Advanced"),
                    (Tab::Devices, "Devices"),
                ] {
                    if ui.selectable_label(self.tab == tab, name).clicked() {
                        self.tab = tab;
                    }
                }
            });
        });
        egui::Panel::bottom("buttons").show(ui, |ui| self.show_buttons(ui));
        egui::CentralPanel::default().show(ui, |ui| {
            let state = self
                .model()
                .filter(|m| m.base.running())
                .map(|m| m.base.state.to_lowercase());
            if let Some(state) = state {
                egui::Frame::new()
                    .fill(Color32::from_rgb(255, 243, 205))
                    .inner_margin(6.0)
                    .show(ui, |ui| {
                        ui.label(
                            RichText::new(format!(
                                "{} is {state}: changes apply at its next start.",
                                self.qube
                            ))
                            .color(Color32::from_rgb(102, 77, 3)),
                        );
                    });
            }
            match self.tab {
                Tab::Basic => self.show_basic(ui),
                Tab::Advanced => self.show_advanced(ui),
                Tab::Devices => self.show_devices(ui),
            }
        });
        self.show_strict_dialog(ui);
    }

    fn show_fatal(&mut self, ui: &mut egui::Ui, fatal: &Fatal) {
        egui::CentralPanel::default().show(ui, |ui| {
            ui.heading(fatal.title());
            ui.add_space(8.0);
            ui.label(fatal.message());
            ui.add_space(8.0);
            ui.horizontal(|ui| {
                if self.client.is_some() && ui.button("Retry").clicked() {
                    self.reload();
                }
                if ui.button("Close").clicked() {
                    self.close(ui);
                }
            });
        });
    }

    fn close(&mut self, ui: &egui::Ui) {
        self.closed = true;
        ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
    }

    fn show_buttons(&mut self, ui: &mut egui::Ui) {
        let Ok(model) = &self.loaded else {
            return;
        };
        if let Some(note) = &self.notice {
            ui.label(RichText::new(note).color(Color32::from_rgb(170, 30, 30)));
        }
        if let Some(report) = &model.last_apply {
            if !report.done.is_empty() {
                ui.label(
                    RichText::new(format!("Applied: {}", report.done.join("; ")))
                        .color(Color32::from_rgb(20, 110, 40)),
                );
            }
            for (what, why) in &report.failed {
                ui.label(
                    RichText::new(format!("Refused: {what}: {why}"))
                        .color(Color32::from_rgb(170, 30, 30)),
                );
            }
            if !report.failed.is_empty() {
                ui.label("Your other changes are kept: fix them and press Apply again.");
            }
        }
        let pending = model.calls().len();
        ui.horizontal(|ui| {
            if ui.button("Refresh").clicked() {
                self.reload();
            }
            ui.label(if pending == 0 {
                "No pending changes".to_owned()
            } else {
                format!("{pending} pending change(s)")
            });
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if ui.button("Cancel").clicked() {
                    self.close(ui);
                }
                if ui.button("Apply").clicked() {
                    self.apply();
                }
                if ui.button("OK").clicked() && self.apply() {
                    self.close(ui);
                }
            });
        });
    }

    /// Applies the pending changes; `true` when all succeeded.
    pub fn apply(&mut self) -> bool {
        self.notice = None;
        let (Some(client), Ok(model)) = (&self.client, &mut self.loaded) else {
            return false;
        };
        model.apply(client).ok()
    }

    fn show_basic(&mut self, ui: &mut egui::Ui) {
        let Ok(model) = &self.loaded else {
            return;
        };
        let b = &model.base;
        egui::Grid::new("basic").num_columns(2).show(ui, |ui| {
            ui.label("Name");
            ui.label(&b.qube);
            ui.end_row();
            ui.label("Class");
            ui.label(&b.class);
            ui.end_row();
            ui.label("State");
            ui.label(&b.state);
            ui.end_row();
            for p in ["label", "template", "netvm"] {
                let v = b.prop(p);
                if !v.value.is_empty() {
                    ui.label(p);
                    ui.label(&v.value);
                    ui.end_row();
                }
            }
            ui.label("PCI devices");
            ui.label(model.selected().len().to_string());
            ui.end_row();
        });
    }

    fn show_advanced(&mut self, ui: &mut egui::Ui) {
        let Ok(model) = &mut self.loaded else {
            return;
        };
        ui.heading("Memory");
        egui::Grid::new("memory").num_columns(2).show(ui, |ui| {
            let label = ui.label("Initial memory (MiB)");
            let mut memory: u64 = model.prop_value("memory").0.trim().parse().unwrap_or(400);
            if ui
                .add(egui::DragValue::new(&mut memory).range(1..=1_048_576))
                .labelled_by(label.id)
                .changed()
            {
                model.edit_int("memory", memory);
            }
            ui.end_row();

            let (mut on, allowed) = model.balancing();
            ui.label("");
            let r = ui.add_enabled(
                allowed.is_ok(),
                egui::Checkbox::new(&mut on, "Include in memory balancing"),
            );
            if r.changed() {
                model.set_balancing(on);
            }
            if let Err(why) = allowed {
                r.on_disabled_hover_text(why);
            }
            ui.end_row();

            let label = ui.label("Max memory (MiB)");
            let (maxmem_text, _) = model.prop_value("maxmem");
            let mut maxmem: u64 = maxmem_text.trim().parse().unwrap_or(0);
            let (on, allowed) = model.balancing();
            if ui
                .add_enabled(
                    on && allowed.is_ok(),
                    egui::DragValue::new(&mut maxmem).range(0..=1_048_576),
                )
                .labelled_by(label.id)
                .changed()
            {
                model.edit_int("maxmem", maxmem);
            }
            ui.end_row();
        });
        if let (_, Err(why)) = model.balancing() {
            ui.label(RichText::new(why).italics());
        }
        ui.add_space(10.0);
        ui.heading("Virtualization");
        egui::Grid::new("virt").num_columns(2).show(ui, |ui| {
            let label = ui.label("Virtualization mode");
            let (current, is_default) = model.prop_value("virt_mode");
            let shown = if is_default {
                format!("default ({current})")
            } else {
                current.clone()
            };
            let modes = model.virt_modes();
            let mut choice: Option<PropEdit> = None;
            egui::ComboBox::from_id_salt("virt_mode")
                .selected_text(shown)
                .show_ui(ui, |ui| {
                    if ui.selectable_label(is_default, "default").clicked() {
                        choice = Some(PropEdit::Reset);
                    }
                    for (mode, why) in &modes {
                        if why.is_none()
                            && ui
                                .selectable_label(!is_default && current == *mode, *mode)
                                .clicked()
                        {
                            choice = Some(PropEdit::Set((*mode).to_owned()));
                        }
                    }
                })
                .response
                .labelled_by(label.id);
            if let Some(c) = choice {
                model.edit_prop("virt_mode", c);
            }
            ui.end_row();

            let label = ui.label("VCPUs");
            let mut vcpus: u64 = model.prop_value("vcpus").0.trim().parse().unwrap_or(2);
            if ui
                .add(egui::DragValue::new(&mut vcpus).range(1..=256))
                .labelled_by(label.id)
                .changed()
            {
                model.edit_int("vcpus", vcpus);
            }
            ui.end_row();

            let label = ui.label("Kernel");
            let (mut kernel, kernel_default) = model.prop_value("kernel");
            ui.horizontal(|ui| {
                if ui
                    .add(egui::TextEdit::singleline(&mut kernel).hint_text("none (the qube's own)"))
                    .labelled_by(label.id)
                    .changed()
                {
                    model.edit_prop("kernel", PropEdit::Set(kernel.clone()));
                }
                let mut use_default = kernel_default;
                if ui.checkbox(&mut use_default, "default kernel").changed() {
                    model.edit_prop(
                        "kernel",
                        if use_default {
                            PropEdit::Reset
                        } else {
                            PropEdit::Set(kernel.clone())
                        },
                    );
                }
            });
            ui.end_row();
        });
        if let Some((_, Some(why))) = model.virt_modes().iter().find(|(m, _)| *m == "pvh") {
            ui.label(RichText::new(*why).italics());
            if model.prop_value("virt_mode").0 == "pvh" {
                ui.label(
                    RichText::new("This qube is set to pvh: choose hvm, or it will not start with PCI devices.")
                        .color(Color32::from_rgb(170, 30, 30)),
                );
            }
        }
    }

    fn device_text(device: &Device) -> String {
        format!("{}  {}", device.ident(), device.description)
    }

    fn show_devices(&mut self, ui: &mut egui::Ui) {
        self.handle_keys(ui);
        let Ok(model) = &self.loaded else {
            return;
        };
        let mut move_in: Option<String> = None;
        let mut move_out: Option<crate::model::Key> = None;
        let mut configure = false;
        ui.horizontal(|ui| {
            let label = ui.label("Filter");
            ui.add(
                egui::TextEdit::singleline(&mut self.filter)
                    .hint_text("port, address or name")
                    .desired_width(240.0),
            )
            .labelled_by(label.id);
        });
        let available = model.available(&self.filter);
        let selected = model.selected();
        let list_height = (ui.available_height() - 90.0).max(120.0);
        let column = ((ui.available_width() - 70.0) / 2.0).max(200.0);
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                ui.set_width(column);
                ui.strong(format!("Available devices ({})", available.len()));
                egui::ScrollArea::vertical()
                    .id_salt("available")
                    .max_height(list_height)
                    .auto_shrink([false, false])
                    .show(ui, |ui| {
                        for d in &available {
                            let port = d.port_id.to_string();
                            let picked = self.pick_available.as_deref() == Some(port.as_str());
                            let r = ui.selectable_label(picked, Self::device_text(d));
                            if r.clicked() {
                                self.pick_available = Some(port.clone());
                                self.side = Side::Available;
                            }
                            if r.double_clicked() {
                                move_in = Some(port.clone());
                            }
                            if picked && self.side == Side::Available {
                                r.scroll_to_me(None);
                            }
                            Self::badges(ui, model, d);
                        }
                    });
            });
            ui.vertical(|ui| {
                ui.add_space(list_height / 2.0 - 30.0);
                let can_in = self
                    .pick_available
                    .as_deref()
                    .and_then(|p| model.base.device_at(p));
                let blocked = can_in.and_then(crate::model::Model::unmovable);
                let r = ui
                    .add_enabled(
                        can_in.is_some() && blocked.is_none(),
                        egui::Button::new(">"),
                    )
                    .on_hover_text("Add the device to this qube (Enter)");
                let r = match &blocked {
                    Some(why) => r.on_disabled_hover_text(why),
                    None => r,
                };
                if r.clicked()
                    && let Some(p) = &self.pick_available
                {
                    move_in = Some(p.clone());
                }
                let r = ui
                    .add_enabled(self.pick_selected.is_some(), egui::Button::new("<"))
                    .on_hover_text("Remove the device from this qube (Delete)");
                if r.clicked() {
                    move_out = self.pick_selected.clone();
                }
            });
            ui.vertical(|ui| {
                ui.set_width(column);
                ui.strong(format!(
                    "Devices always connected to this qube ({})",
                    selected.len()
                ));
                egui::ScrollArea::vertical()
                    .id_salt("selected")
                    .max_height(list_height)
                    .auto_shrink([false, false])
                    .show(ui, |ui| {
                        for s in &selected {
                            let picked = self.pick_selected.as_ref() == Some(&s.key);
                            let r = ui.selectable_label(picked, Self::selected_text(model, s));
                            if r.clicked() {
                                self.pick_selected = Some(s.key.clone());
                                self.side = Side::Selected;
                            }
                            if r.double_clicked() {
                                move_out = Some(s.key.clone());
                            }
                            Self::selected_badges(ui, model, s);
                        }
                    });
                let picked = self
                    .pick_selected
                    .as_ref()
                    .and_then(|k| selected.iter().find(|s| s.key == *k));
                if ui
                    .add_enabled(
                        picked.is_some(),
                        egui::Button::new("Configure strict reset…"),
                    )
                    .on_hover_text("no-strict-reset and permissive of the chosen device")
                    .clicked()
                {
                    configure = true;
                }
            });
        });
        if let Some(p) = self
            .pick_available
            .as_deref()
            .and_then(|p| model.base.device_at(p))
            && let Some(why) = crate::model::Model::unmovable(p)
        {
            ui.label(RichText::new(why).color(Color32::from_rgb(170, 30, 30)));
        }
        if configure {
            self.open_strict(&selected);
        }
        self.do_moves(move_in, move_out);
    }

    fn selected_text(model: &Model, s: &Selected) -> String {
        match s
            .present_port
            .as_deref()
            .and_then(|p| model.base.device_at(p))
        {
            Some(d) => Self::device_text(d),
            None if s.key.devid == "*" => format!("{}  any device (not present)", s.key.ident()),
            None => format!("{}  {} (not present)", s.key.ident(), s.key.devid),
        }
    }

    fn badge(ui: &mut egui::Ui, text: &str, why: &str, severe: bool) {
        let color = if severe {
            Color32::from_rgb(170, 30, 30)
        } else {
            Color32::from_rgb(120, 90, 10)
        };
        ui.label(RichText::new(text).small().color(color))
            .on_hover_text(why);
    }

    fn badges(ui: &mut egui::Ui, model: &Model, d: &Device) {
        let badges = model.badges(d);
        if badges.is_empty() {
            return;
        }
        ui.horizontal_wrapped(|ui| {
            ui.add_space(16.0);
            for b in &badges {
                Self::badge(ui, &b.text, &b.why, b.severe);
            }
        });
    }

    fn selected_badges(ui: &mut egui::Ui, model: &Model, s: &Selected) {
        let device = s
            .present_port
            .as_deref()
            .and_then(|p| model.base.device_at(p));
        let mut extra: Vec<(String, String, bool)> = Vec::new();
        if s.saved.is_none() {
            extra.push(("new".into(), "Added on Apply".into(), false));
        }
        for (name, on) in [
            ("no-strict-reset", s.options.no_strict_reset),
            ("permissive", s.options.permissive),
        ] {
            if on {
                extra.push((name.into(), "Set for this assignment".into(), false));
            }
        }
        if s.saved.is_some_and(|o| o != s.options) {
            extra.push(("options changed".into(), "Saved on Apply".into(), false));
        }
        ui.horizontal_wrapped(|ui| {
            ui.add_space(16.0);
            for (t, why, severe) in &extra {
                Self::badge(ui, t, why, *severe);
            }
            if let Some(d) = device {
                for b in model.badges(d) {
                    Self::badge(ui, &b.text, &b.why, b.severe);
                }
            }
        });
    }

    fn do_moves(&mut self, move_in: Option<String>, move_out: Option<crate::model::Key>) {
        let Ok(model) = &mut self.loaded else {
            return;
        };
        if let Some(port) = move_in {
            match model.move_in(&port) {
                Ok(()) => {
                    self.notice = None;
                    self.pick_available = None;
                }
                Err(why) => self.notice = Some(why),
            }
        }
        if let Some(key) = move_out {
            model.move_out(&key);
            self.pick_selected = None;
            self.notice = None;
        }
    }

    /// Arrow keys move the highlight in the list last clicked; Enter or `>`
    /// moves an available device in, Delete, Backspace or `<` moves a
    /// selected one out (not while typing in the filter).
    fn handle_keys(&mut self, ui: &mut egui::Ui) {
        if ui.ctx().egui_wants_keyboard_input() || self.strict.is_some() {
            return;
        }
        let Ok(model) = &self.loaded else {
            return;
        };
        let (up, down, add, remove) = ui.input(|i| {
            (
                i.key_pressed(EKey::ArrowUp),
                i.key_pressed(EKey::ArrowDown),
                i.key_pressed(EKey::Enter)
                    || i.events
                        .iter()
                        .any(|e| matches!(e, egui::Event::Text(t) if t == ">")),
                i.key_pressed(EKey::Delete)
                    || i.key_pressed(EKey::Backspace)
                    || i.events
                        .iter()
                        .any(|e| matches!(e, egui::Event::Text(t) if t == "<")),
            )
        });
        let step = |i: Option<usize>, n: usize| -> Option<usize> {
            if n == 0 {
                return None;
            }
            Some(match (i, up, down) {
                (None, _, _) => 0,
                (Some(i), true, _) => i.saturating_sub(1),
                (Some(i), _, true) => (i + 1).min(n - 1),
                (Some(i), _, _) => i,
            })
        };
        let mut move_in = None;
        let mut move_out = None;
        match self.side {
            Side::Available => {
                let list: Vec<String> = model
                    .available(&self.filter)
                    .iter()
                    .map(|d| d.port_id.to_string())
                    .collect();
                if up || down {
                    let at = self
                        .pick_available
                        .as_ref()
                        .and_then(|p| list.iter().position(|x| x == p));
                    self.pick_available = step(at, list.len()).and_then(|i| list.get(i).cloned());
                }
                if add {
                    move_in = self.pick_available.clone();
                }
            }
            Side::Selected => {
                let list: Vec<crate::model::Key> =
                    model.selected().into_iter().map(|s| s.key).collect();
                if up || down {
                    let at = self
                        .pick_selected
                        .as_ref()
                        .and_then(|p| list.iter().position(|x| x == p));
                    self.pick_selected = step(at, list.len()).and_then(|i| list.get(i).cloned());
                }
                if remove {
                    move_out = self.pick_selected.clone();
                }
            }
        }
        self.do_moves(move_in, move_out);
    }

    fn open_strict(&mut self, selected: &[Selected]) {
        let Some(s) = self
            .pick_selected
            .as_ref()
            .and_then(|k| selected.iter().find(|s| s.key == *k))
        else {
            return;
        };
        self.strict = Some(StrictDialog {
            key: s.key.clone(),
            options: s.options,
            saved: s.saved,
        });
    }

    fn show_strict_dialog(&mut self, ui: &mut egui::Ui) {
        let Some(dialog) = &mut self.strict else {
            return;
        };
        let xen = self
            .loaded
            .as_ref()
            .is_ok_and(|m| m.base.flavour == Flavour::Xen);
        let mut done: Option<bool> = None;
        egui::Modal::new(egui::Id::unique("strict-reset")).show(ui.ctx(), |ui| {
            ui.set_max_width(520.0);
            ui.heading(format!("Strict reset: {}", dialog.key.ident()));
            ui.label(match dialog.saved {
                Some(o) => format!("Saved now: {}", o.text()),
                None => "Saved now: nothing (the device is added on Apply)".to_owned(),
            });
            ui.add_space(6.0);
            ui.checkbox(&mut dialog.options.no_strict_reset, "no-strict-reset");
            ui.label("Allow this device although it cannot be reset on its own (or its reset domain is shared).");
            if dialog.options.no_strict_reset {
                ui.label(RichText::new(NO_STRICT_RESET_WARNING).color(Color32::from_rgb(170, 30, 30)));
            }
            ui.add_space(6.0);
            ui.checkbox(&mut dialog.options.permissive, "permissive");
            ui.label(if xen {
                "Let the qube write the device's configuration space unfiltered (Xen pciback)."
            } else {
                "Xen only: this host runs KVM, where qpcid refuses to start a qube with permissive."
            });
            if dialog.options.permissive {
                ui.label(RichText::new(PERMISSIVE_WARNING).color(Color32::from_rgb(170, 30, 30)));
            }
            ui.add_space(8.0);
            ui.horizontal(|ui| {
                if ui.button("Use these options").clicked() {
                    done = Some(true);
                }
                if ui.button("Back").clicked() {
                    done = Some(false);
                }
            });
        });
        if let Some(keep) = done {
            let dialog = self.strict.take();
            if keep && let (Some(d), Ok(model)) = (dialog, &mut self.loaded) {
                model.set_options(&d.key, d.options);
            }
        }
    }
}

/// The eframe wrapper.
pub struct EframeApp(pub App);

impl eframe::App for EframeApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.0.show(ui);
    }
}
