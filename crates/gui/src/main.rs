//! `qubes-vm-settings VM [--tab basic|advanced|devices]`: the Qube settings
//! dialog. The data comes from qpcid (found or started as the CLI does).

use std::process::ExitCode;

use qpci_api::Client;
use qubes_vm_settings::data::Fatal;
use qubes_vm_settings::{App, EframeApp, Tab, discover};

const USAGE: &str = "usage: qubes-vm-settings VMNAME [--tab basic|advanced|devices]";

fn parse(args: &[String]) -> Result<(String, Tab), String> {
    let mut qube = None;
    let mut tab = Tab::Basic;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--tab" => {
                tab = it
                    .next()
                    .ok_or("--tab needs a value: basic, advanced or devices")?
                    .parse()?;
            }
            t if t.starts_with("--tab=") => tab = t["--tab=".len()..].parse()?,
            t if t.starts_with('-') => return Err(format!("unknown option {t}")),
            name if qube.is_none() => qube = Some(name.to_owned()),
            extra => return Err(format!("unexpected argument {extra}")),
        }
    }
    Ok((qube.ok_or("a qube name is required")?, tab))
}

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if discover::is_detach_helper(&argv) {
        let e = discover::detach_helper(argv.get(2..).unwrap_or_default());
        eprintln!("qubes-vm-settings: cannot start qpcid: {e}");
        return ExitCode::from(1);
    }
    let args: Vec<String> = argv
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let (qube, tab) = match parse(&args) {
        Ok(v) => v,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{USAGE}\nqubes-vm-settings: error: {e}");
            return ExitCode::from(2);
        }
    };
    let client = discover::discover()
        .map(Client::new)
        .map_err(|detail| Fatal::NotRunning { detail });
    let options = eframe::NativeOptions {
        viewport: eframe::egui::ViewportBuilder::default()
            .with_title(format!("{qube}: Qube settings"))
            .with_app_id("qubes-vm-settings")
            .with_inner_size([980.0, 640.0]),
        ..Default::default()
    };
    let title = format!("{qube}: Qube settings");
    let result = eframe::run_native(
        &title,
        options,
        Box::new(move |cc| {
            let mut app = App::new(client, &qube, tab);
            let ctx = cc.egui_ctx.clone();
            app.watch_events(move || ctx.request_repaint());
            Ok(Box::new(EframeApp(app)))
        }),
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qubes-vm-settings: cannot open a window: {e}");
            ExitCode::from(1)
        }
    }
}
