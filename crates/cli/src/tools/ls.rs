//! `qvm-ls` (spec/qvm-tools.md §4): columns, formats, filters, order.

use clap::{Arg, ArgAction, Command};

use super::Ctx;
use super::ls_columns::{Cache, FORMATS, NUMERIC, SPECIAL, format_columns, numeric_key};
use crate::admin::VmEntry;
use crate::argparse::{self, flag};
use crate::error::CliError;
use crate::table;
use crate::transport::ApiError;
use crate::vmargs;

const EXAMPLES: &str = "\
Examples:
  qvm-ls                              every qube: NAME STATE CLASS LABEL TEMPLATE NETVM
  qvm-ls --running -O name,virt_mode,maxmem   chosen columns of running qubes
  qvm-ls --raw-list                   one name per line
  qvm-ls --format network --tree      the network tree";

fn many(id: &'static str, value: &'static str, help: &'static str) -> Arg {
    Arg::new(id)
        .long(id)
        .value_name(value)
        .num_args(1..)
        .action(ArgAction::Append)
        .help(help)
}

/// The clap definition.
pub fn command() -> Command {
    let formats: Vec<&str> = FORMATS.iter().map(|(n, _)| *n).collect();
    let cmd = argparse::base("qvm-ls", "List qubes and their properties", EXAMPLES)
        .arg(
            Arg::new("format")
                .long("format")
                .short('o')
                .value_name("FMT")
                .value_parser(formats)
                .conflicts_with_all(["fields", "disk", "network", "kernel"]),
        )
        .arg(
            Arg::new("fields")
                .long("fields")
                .short('O')
                .value_name("FIELD,...")
                .conflicts_with_all(["disk", "network", "kernel"])
                .help("comma-separated columns"),
        )
        .arg(flag("disk", "--format disk").short('d'))
        .arg(flag("network", "--format network").short('n'))
        .arg(flag("kernel", "--format kernel").short('k'))
        .arg(flag("tree", "show the network tree").short('t'))
        .arg(flag("raw-data", "no header, cells joined by |"))
        .arg(flag("raw-list", "only the names, one per line"))
        .arg(Arg::new("sort").long("sort").value_name("COLUMN"))
        .arg(flag("reverse", "reverse the order"))
        .arg(flag("ignore-case", "sort ignoring case"))
        .arg(many("class", "CLASS", "only these classes"))
        .arg(many("label", "LABEL", "only these labels"))
        .arg(many("tags", "TAG", "only qubes with one of these tags"))
        .arg(many("exclude-tags", "TAG", "no qubes with these tags"))
        .arg(flag("running", "running qubes"))
        .arg(flag("paused", "paused qubes"))
        .arg(flag("halted", "halted qubes"))
        .arg(many(
            "template-source",
            "TEMPLATE",
            "only qubes based on these",
        ))
        .arg(many("netvm-is", "NETVM", "only qubes with this netvm"))
        .arg(
            Arg::new("internal")
                .long("internal")
                .value_parser(["y", "n"]),
        )
        .arg(
            Arg::new("servicevm")
                .long("servicevm")
                .value_parser(["y", "n"]),
        )
        .arg(flag("pending-update", "qubes with updates available"))
        .arg(many("features", "K=V", "feature K equals V"))
        .arg(many("prefs", "K=V", "property K equals V"))
        .arg(flag("spinner", "show a progress indicator"))
        .arg(flag("no-spinner", "no progress indicator"))
        .arg(flag("help-formats", "list the formats and exit"))
        .arg(flag("help-columns", "list the columns and exit"));
    vmargs::add_args(cmd, "every qube, dom0 included")
}

fn columns(ctx: &Ctx<'_, '_>) -> Vec<String> {
    let m = &ctx.m;
    if m.get_flag("raw-list") {
        return vec!["NAME".to_owned()];
    }
    if let Some(fields) = argparse::string(m, "fields") {
        return fields
            .split(',')
            .map(|f| f.trim().to_uppercase())
            .filter(|f| !f.is_empty())
            .collect();
    }
    let format = if m.get_flag("disk") {
        "disk".to_owned()
    } else if m.get_flag("network") {
        "network".to_owned()
    } else if m.get_flag("kernel") {
        "kernel".to_owned()
    } else {
        argparse::string(m, "format").unwrap_or_else(|| "simple".to_owned())
    };
    format_columns(&format).unwrap_or_default()
}

/// `K=V` filter arguments: (key, expected value; `None` for "unset").
fn kv_filters(ctx: &Ctx<'_, '_>, id: &str) -> Result<Vec<(String, Option<String>)>, CliError> {
    let mut out = Vec::new();
    for arg in argparse::strings(&ctx.m, id) {
        match arg.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                let v = match v {
                    "" => None,
                    "''" | "\"\"" => Some(String::new()),
                    v => Some(v.to_owned()),
                };
                out.push((k.to_owned(), v));
            }
            _ => return Err(ctx.usage(format!("Invalid argument: --{id} {arg}"))),
        }
    }
    Ok(out)
}

fn truthy(v: Option<String>) -> bool {
    matches!(v.as_deref(), Some("1" | "true" | "True"))
}

/// Whether `vm` passes every filter, in Qubes' order.
fn keep(ctx: &Ctx<'_, '_>, cache: &mut Cache<'_>, vm: &VmEntry) -> Result<bool, ApiError> {
    let m = &ctx.m;
    let list = |id: &str| argparse::strings(m, id);
    let classes = list("class");
    if !classes.is_empty() && !classes.contains(&vm.class) {
        return Ok(false);
    }
    let labels = list("label");
    if !labels.is_empty() && !labels.contains(&cache.prop(&vm.name, "label")?.unwrap_or_default()) {
        return Ok(false);
    }
    let tags = list("tags");
    if !tags.is_empty() && !cache.tags(&vm.name)?.iter().any(|t| tags.contains(t)) {
        return Ok(false);
    }
    let excluded = list("exclude-tags");
    if !excluded.is_empty() && cache.tags(&vm.name)?.iter().any(|t| excluded.contains(t)) {
        return Ok(false);
    }
    for (id, prop) in [("template-source", "template"), ("netvm-is", "netvm")] {
        let wanted = list(id);
        if !wanted.is_empty() && !wanted.contains(&cache.prop(&vm.name, prop)?.unwrap_or_default())
        {
            return Ok(false);
        }
    }
    let admin = cache.admin();
    for id in ["internal", "servicevm"] {
        if let Some(yn) = argparse::string(m, id)
            && truthy(admin.feature_get(&vm.name, id)?) != (yn == "y")
        {
            return Ok(false);
        }
    }
    if m.get_flag("pending-update")
        && admin
            .feature_get(&vm.name, "updates-available")?
            .is_none_or(|v| v.is_empty())
    {
        return Ok(false);
    }
    for (k, v) in kv_filters(ctx, "features").unwrap_or_default() {
        if admin.feature_get(&vm.name, &k)? != v {
            return Ok(false);
        }
    }
    for (k, v) in kv_filters(ctx, "prefs").unwrap_or_default() {
        let actual = cache.props(&vm.name)?.get(&k).map(|p| p.value.clone());
        let actual = actual.filter(|a| !a.is_empty() || v.as_deref() == Some(""));
        if actual != v {
            return Ok(false);
        }
    }
    let states: Vec<&str> = ["running", "paused", "halted"]
        .into_iter()
        .filter(|s| m.get_flag(s))
        .collect();
    Ok(states.is_empty() || states.contains(&vm.state.to_lowercase().as_str()))
}

/// The network tree order: unnetworked non-providers, then each provider
/// with the qubes behind it; returns (qube, depth).
fn tree_order(cache: &mut Cache<'_>, vms: &[VmEntry]) -> Result<Vec<(VmEntry, usize)>, ApiError> {
    let mut netvm_of = Vec::new();
    for vm in vms {
        let netvm = cache.prop(&vm.name, "netvm")?;
        let provides = cache.prop(&vm.name, "provides_network")?.as_deref() == Some("True");
        netvm_of.push((netvm, provides));
    }
    let mut out = Vec::new();
    for (vm, (netvm, provides)) in vms.iter().zip(&netvm_of) {
        if netvm.is_none() && !provides {
            out.push((vm.clone(), 0));
        }
    }
    fn walk(
        vms: &[VmEntry],
        netvm_of: &[(Option<String>, bool)],
        parent: &str,
        depth: usize,
        out: &mut Vec<(VmEntry, usize)>,
    ) {
        for (vm, (netvm, _)) in vms.iter().zip(netvm_of) {
            if netvm.as_deref() == Some(parent) && !out.iter().any(|(o, _)| o.name == vm.name) {
                out.push((vm.clone(), depth));
                walk(vms, netvm_of, &vm.name, depth + 1, out);
            }
        }
    }
    for (vm, (netvm, provides)) in vms.iter().zip(&netvm_of) {
        let is_root = *provides
            && netvm
                .as_ref()
                .is_none_or(|n| !vms.iter().any(|v| &v.name == n));
        if is_root && !out.iter().any(|(o, _)| o.name == vm.name) {
            out.push((vm.clone(), 0));
            walk(vms, &netvm_of, &vm.name, 1, &mut out);
        }
    }
    for vm in vms {
        if !out.iter().any(|(o, _)| o.name == vm.name) {
            out.push((vm.clone(), 0));
        }
    }
    Ok(out)
}

/// Runs qvm-ls.
pub fn run(ctx: &mut Ctx<'_, '_>) -> Result<(), CliError> {
    if ctx.m.get_flag("help-formats") {
        let text: String = FORMATS
            .iter()
            .map(|(n, c)| format!("{n}: {}\n", c.join(" ")))
            .collect();
        return ctx.out(&text);
    }
    if ctx.m.get_flag("help-columns") {
        let text: String = SPECIAL
            .iter()
            .map(|(c, h)| format!("{c}: {h}\n"))
            .chain(std::iter::once(
                "any other: the property of that name (VIRT-MODE is virt_mode)\n".to_owned(),
            ))
            .collect();
        return ctx.out(&text);
    }
    kv_filters(ctx, "features")?;
    kv_filters(ctx, "prefs")?;
    let sel = vmargs::from_matches(&ctx.prog, &ctx.cmd, &ctx.m, false)?;
    let all = ctx.vm_list()?;
    let mut vms = if sel.all || !sel.names.is_empty() {
        vmargs::resolve(&ctx.prog, &ctx.cmd, &all, &sel, true)?
    } else {
        all
    };
    vms.sort_by(|a, b| a.name.cmp(&b.name));
    let cols = columns(ctx);
    let mut cache = Cache::new(ctx.admin);
    let mut kept = Vec::new();
    for vm in vms {
        if keep(ctx, &mut cache, &vm).map_err(|e| ctx.api(&e))? {
            kept.push(vm);
        }
    }
    let ordered: Vec<(VmEntry, usize)> = if ctx.m.get_flag("tree") {
        tree_order(&mut cache, &kept).map_err(|e| ctx.api(&e))?
    } else {
        kept.into_iter().map(|v| (v, 0)).collect()
    };
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (vm, depth) in &ordered {
        let mut row = Vec::with_capacity(cols.len());
        for c in &cols {
            let mut cell = cache.cell(vm, c).map_err(|e| ctx.api(&e))?;
            if c == "NAME" && *depth > 0 {
                cell = format!("{}└─{cell}", "  ".repeat(*depth));
            }
            row.push(cell);
        }
        rows.push(row);
    }
    if !ctx.m.get_flag("tree") {
        sort_rows(ctx, &cols, &mut rows);
    }
    let raw = ctx.m.get_flag("raw-data") || ctx.m.get_flag("raw-list");
    let text = if raw {
        rows.iter().map(|r| format!("{}\n", r.join("|"))).collect()
    } else {
        let mut cells = vec![cols.clone()];
        cells.extend(rows);
        table::render(&cells)
    };
    ctx.out(&text)
}

fn sort_rows(ctx: &Ctx<'_, '_>, cols: &[String], rows: &mut [Vec<String>]) {
    let key = argparse::string(&ctx.m, "sort")
        .unwrap_or_else(|| "NAME".to_owned())
        .to_uppercase();
    if let Some(i) = cols.iter().position(|c| *c == key) {
        let ignore_case = ctx.m.get_flag("ignore-case");
        if NUMERIC.contains(&key.as_str()) {
            rows.sort_by(|a, b| numeric_key(&a[i]).total_cmp(&numeric_key(&b[i])));
        } else if ignore_case {
            rows.sort_by_key(|r| r[i].to_uppercase());
        } else {
            rows.sort_by(|a, b| a[i].cmp(&b[i]));
        }
    }
    if ctx.m.get_flag("reverse") {
        rows.reverse();
    }
}
