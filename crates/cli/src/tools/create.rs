//! `qvm-create` (spec/qvm-tools.md §5).

use clap::{Arg, ArgAction, ArgGroup, Command};

use super::Ctx;
use crate::argparse::{self, flag};
use crate::error::CliError;
use crate::flags::quote;

const EXAMPLES: &str = "\
Examples:
  qvm-create -l red -t fedora-40 sys-usb2      an AppVM based on fedora-40
  qvm-create -C TemplateVM -l black tpl2       a template
  qvm-create -l blue --property virt_mode=hvm --property memory=800 work2
PCI qubes default to virt_mode hvm and maxmem 0 once a device is assigned.";

/// The clap definition.
pub fn command() -> Command {
    argparse::base("qvm-create", "Create a new qube", EXAMPLES)
        .arg(
            Arg::new("class")
                .long("class")
                .short('C')
                .value_name("CLS")
                .help("the class: AppVM (default), TemplateVM, StandaloneVM, DispVM"),
        )
        .arg(flag("standalone", "create a StandaloneVM"))
        .arg(flag("disp", "create a DispVM (label red unless given)"))
        .arg(
            Arg::new("property")
                .long("property")
                .visible_alias("prop")
                .value_name("NAME=VALUE")
                .action(ArgAction::Append)
                .help("set a property after creating (repeatable)"),
        )
        .arg(
            Arg::new("template")
                .long("template")
                .short('t')
                .value_name("VALUE")
                .help("the template"),
        )
        .arg(
            Arg::new("label")
                .long("label")
                .short('l')
                .value_name("VALUE")
                .help("the label (colour)"),
        )
        .arg(
            Arg::new("pool")
                .long("pool")
                .short('p')
                .value_name("VOLUME=POOL")
                .action(ArgAction::Append)
                .help("storage pool of one volume (qpci has no pools)"),
        )
        .arg(
            Arg::new("one_pool")
                .short('P')
                .value_name("POOL")
                .help("storage pool of every volume (qpci has no pools)"),
        )
        .arg(flag("help-classes", "list the qube classes and exit"))
        .arg(
            Arg::new("root-copy-from")
                .long("root-copy-from")
                .short('r')
                .value_name("FILE"),
        )
        .arg(
            Arg::new("root-move-from")
                .long("root-move-from")
                .short('R')
                .value_name("FILE"),
        )
        .group(
            ArgGroup::new("root")
                .args(["root-copy-from", "root-move-from"])
                .multiple(false),
        )
        .arg(Arg::new("vmname").value_name("VMNAME"))
}

/// Runs qvm-create.
pub fn run(ctx: &mut Ctx<'_, '_>) -> Result<(), CliError> {
    let quiet = ctx.quiet() > 0;
    let logged = |message: String, code: u8| CliError::Logged {
        message,
        quiet,
        code,
    };
    if ctx.m.get_flag("help-classes") {
        let mut classes = ctx
            .admin
            .vmclass_list()
            .map_err(|e| logged(e.to_string(), 1))?;
        classes.sort();
        let text: String = classes.iter().map(|c| format!("{c}\n")).collect();
        return ctx.out(&text);
    }
    let mut props: Vec<(String, String)> = Vec::new();
    for token in argparse::strings(&ctx.m, "property") {
        let Some((k, v)) = token.split_once('=') else {
            return Err(ctx.usage(format!("Invalid property token: {}", quote(&token))));
        };
        match props.iter_mut().find(|(name, _)| name == k) {
            Some(slot) => slot.1 = v.to_owned(),
            None => props.push((k.to_owned(), v.to_owned())),
        }
    }
    let pools = argparse::strings(&ctx.m, "pool");
    if pools.iter().any(|p| !p.contains('=')) {
        return Err(ctx.usage("Pool argument must be of form: -p volume_name=pool_name"));
    }
    let mut take = |key: &str| -> Option<String> {
        let i = props.iter().position(|(k, _)| k == key)?;
        Some(props.remove(i).1)
    };
    let prop_label = take("label");
    let prop_template = take("template");
    let prop_name = take("name");
    let disp = ctx.m.get_flag("disp");
    let mut class = argparse::string(&ctx.m, "class").unwrap_or_else(|| "AppVM".to_owned());
    let mut label = argparse::string(&ctx.m, "label").or(prop_label);
    if disp {
        class = "DispVM".to_owned();
        label = label.or_else(|| Some("red".to_owned()));
    }
    if ctx.m.get_flag("standalone") {
        class = "StandaloneVM".to_owned();
    }
    let template = argparse::string(&ctx.m, "template").or(prop_template);
    let name = argparse::string(&ctx.m, "vmname").or(prop_name);
    let Some(label) = label else {
        return Err(ctx.usage("--label option is mandatory"));
    };
    let Some(name) = name else {
        return Err(ctx.usage("VMNAME is mandatory"));
    };
    let root = argparse::string(&ctx.m, "root-copy-from")
        .or_else(|| argparse::string(&ctx.m, "root-move-from"));
    if let Some(file) = root {
        if !std::path::Path::new(&file).exists() {
            return Err(
                ctx.usage("File pointed by --root-copy-from/--root-move-from does not exist")
            );
        }
        if matches!(class.as_str(), "AppVM" | "DispVM") {
            return Err(ctx.usage("--root-copy-from/--root-move-from used but this qube does not have own 'root' volume (uses template's one)"));
        }
        return Err(logged(
            "Error creating VM: qpci has no storage volumes, so --root-copy-from/--root-move-from cannot import a root image; create the qube without them".to_owned(),
            1,
        ));
    }
    let template = template.filter(|t| !t.is_empty());
    if class == "StandaloneVM" && template.is_some() {
        return Err(logged(
            "Error creating VM: a StandaloneVM based on a template is a copy of the template's volumes, and qpci has no volumes; create it without --template".to_owned(),
            1,
        ));
    }
    if name.contains(' ') {
        return Err(logged(
            "Error creating VM: VM name contains illegal characters".to_owned(),
            1,
        ));
    }
    check_label(ctx, &label, quiet)?;
    let method_class = class.clone();
    let one_pool = argparse::string(&ctx.m, "one_pool");
    let created = if one_pool.is_some() || !pools.is_empty() {
        let mut payload = format!("name={name} label={label}");
        if let Some(p) = one_pool {
            payload.push_str(&format!(" pool={p}"));
        }
        let mut sorted = pools.clone();
        sorted.sort();
        for p in sorted {
            payload.push_str(&format!(" pool:{p}"));
        }
        ctx.admin
            .transport()
            .call(
                &format!("admin.vm.CreateInPool.{method_class}"),
                template.as_deref().unwrap_or(""),
                "dom0",
                payload.as_bytes(),
            )
            .map(drop)
    } else {
        ctx.admin.create(
            &method_class,
            template.as_deref().unwrap_or(""),
            &name,
            &label,
        )
    };
    if let Err(e) = created {
        return Err(logged(format!("Error creating VM: {e}"), 1));
    }
    let mut failed = false;
    for (prop, value) in props {
        if let Err(e) = ctx.admin.property_set(&name, &prop, value.as_bytes()) {
            failed = true;
            let prefix = if quiet { "" } else { "app: " };
            ctx.err_line(&format!(
                "{prefix}Error setting property {prop} (but VM created): {e}"
            ));
        }
    }
    if failed {
        return Err(CliError::Exit(2));
    }
    Ok(())
}

/// The label must be a listed name, or the index of one (§5.1 step 6).
fn check_label(ctx: &mut Ctx<'_, '_>, label: &str, quiet: bool) -> Result<(), CliError> {
    let labels = ctx.admin.label_list().map_err(|e| CliError::Logged {
        message: format!("Error creating VM: {e}"),
        quiet,
        code: 1,
    })?;
    if labels.iter().any(|l| l == label) {
        return Ok(());
    }
    if !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()) {
        for l in &labels {
            if ctx.admin.label_index(l).is_ok_and(|i| i.trim() == label) {
                return Ok(());
            }
        }
    }
    Err(ctx.usage(format!(
        "no such label: {}; available: {}",
        quote(label),
        labels.join(", ")
    )))
}
