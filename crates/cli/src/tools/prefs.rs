//! `qvm-prefs` (spec/qvm-tools.md §3): list, get, set and reset a qube's
//! properties.

use std::collections::BTreeMap;

use clap::{Arg, Command};

use super::Ctx;
use crate::admin::PropValue;
use crate::argparse::{self, flag};
use crate::error::CliError;
use crate::flags::quote;
use crate::transport::ApiError;

const EXAMPLES: &str = "\
Examples:
  qvm-prefs work                      list every property (D = default, - = set, U = no value)
  qvm-prefs work virt_mode            print one value
  qvm-prefs work memory 800           set a value
  qvm-prefs work netvm none           no network (empty value)
  qvm-prefs --default work maxmem     back to the default (0 while PCI devices are assigned)";

/// The VM properties for which `none` means "no qube" (an empty payload).
const NONE_IS_EMPTY: [&str; 5] = ["netvm", "template", "default_dispvm", "guivm", "audiovm"];

/// The clap definition.
pub fn command() -> Command {
    argparse::base(
        "qvm-prefs",
        "List, get, set or reset a qube's properties",
        EXAMPLES,
    )
    .arg(flag(
        "help-properties",
        "list the properties with their help",
    ))
    .arg(flag(
        "hide-default",
        "leave out values that are at their default",
    ))
    .arg(flag("get", "get the value (the default action)").short('g'))
    .arg(flag("set", "set the value (accepted and ignored)").short('s'))
    .arg(flag("default", "reset the property to its default").short('D'))
    .arg(Arg::new("vmname").value_name("VMNAME"))
    .arg(Arg::new("property").value_name("PROPERTY"))
    .arg(
        Arg::new("value")
            .value_name("VALUE")
            .allow_hyphen_values(true),
    )
}

/// Maps a failure of Get/Set/Reset to qvm-prefs' styles (§3.5).
fn prop_error(ctx: &Ctx<'_, '_>, prop: &str, e: &ApiError) -> CliError {
    match e {
        ApiError::Exception(x) if x.class == "QubesNoSuchPropertyError" => {
            ctx.usage(format!("no such property: {}", quote(prop)))
        }
        ApiError::Empty => ctx.runtime(format!("Failed to access {} property", quote(prop))),
        other => ctx.api(other),
    }
}

/// The value as the listing shows it.
fn shown(v: &PropValue) -> String {
    if v.is_none_vm() {
        "None".to_owned()
    } else {
        v.value.clone()
    }
}

/// Wraps `text` at 80 columns after an indent of `indent` (first line
/// already positioned there).
fn wrap(text: &str, indent: usize) -> String {
    let width = 80usize.saturating_sub(indent).max(20);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    lines.join(&format!("\n{}", " ".repeat(indent)))
}

/// Runs qvm-prefs.
pub fn run(ctx: &mut Ctx<'_, '_>) -> Result<(), CliError> {
    let Some(vm) = argparse::string(&ctx.m, "vmname") else {
        return Err(ctx.usage("the following arguments are required: VMNAME"));
    };
    let property = argparse::string(&ctx.m, "property").map(|p| p.replace('-', "_"));
    let value = argparse::string(&ctx.m, "value");
    let vms = ctx.vm_list()?;
    if !vms.iter().any(|v| v.name == vm) {
        return Err(ctx.usage(format!("no such domain: {}", quote(&vm))));
    }
    let hide_default = ctx.m.get_flag("hide-default");
    if ctx.m.get_flag("help-properties") {
        return help_properties(ctx, &vm);
    }
    let Some(prop) = property else {
        return list(ctx, &vm, hide_default);
    };
    if let Some(value) = value {
        let payload =
            if NONE_IS_EMPTY.contains(&prop.as_str()) && value.eq_ignore_ascii_case("none") {
                Vec::new()
            } else {
                value.into_bytes()
            };
        return ctx
            .admin
            .property_set(&vm, &prop, &payload)
            .map_err(|e| prop_error(ctx, &prop, &e));
    }
    if ctx.m.get_flag("default") {
        return ctx
            .admin
            .property_reset(&vm, &prop)
            .map_err(|e| prop_error(ctx, &prop, &e));
    }
    let v = ctx
        .admin
        .property_get(&vm, &prop)
        .map_err(|e| prop_error(ctx, &prop, &e))?;
    if v.is_unavailable() {
        return Err(ctx.runtime(format!("property {} of {vm} has no value", quote(&prop))));
    }
    if (hide_default && v.default) || v.is_none_vm() {
        return Ok(());
    }
    ctx.out(&format!("{}\n", v.value))
}

fn list(ctx: &mut Ctx<'_, '_>, vm: &str, hide_default: bool) -> Result<(), CliError> {
    let mut names = ctx.admin.property_list(vm).map_err(|e| ctx.api(&e))?;
    names.sort();
    names.dedup();
    let values: BTreeMap<String, PropValue> = match ctx.admin.property_get_all(vm) {
        Ok(all) => all,
        Err(ApiError::Empty) => {
            let mut one_by_one = BTreeMap::new();
            for n in &names {
                if let Ok(v) = ctx.admin.property_get(vm, n) {
                    one_by_one.insert(n.clone(), v);
                }
            }
            one_by_one
        }
        Err(e) => return Err(ctx.api(&e)),
    };
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let mut text = String::new();
    for name in &names {
        let pad = " ".repeat(width - name.chars().count());
        match values.get(name) {
            Some(v) if !v.is_unavailable() => {
                if v.default && hide_default {
                    continue;
                }
                let flag = if v.default { 'D' } else { '-' };
                text.push_str(&format!("{name}{pad}  {flag}  {}\n", shown(v)));
            }
            _ => text.push_str(&format!("{name}{pad}  U\n")),
        }
    }
    ctx.out(&text)
}

fn help_properties(ctx: &mut Ctx<'_, '_>, vm: &str) -> Result<(), CliError> {
    let mut names = ctx.admin.property_list(vm).map_err(|e| ctx.api(&e))?;
    names.sort();
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let mut text = String::new();
    for name in &names {
        let help = ctx
            .admin
            .property_help(vm, name)
            .map_err(|e| prop_error(ctx, name, &e))?;
        let pad = " ".repeat(width - name.chars().count());
        text.push_str(&format!("  {name}{pad}  {}\n", wrap(&help, width + 6)));
    }
    ctx.out(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping() {
        let text = "word ".repeat(30);
        let wrapped = wrap(&text, 10);
        assert!(wrapped.lines().all(|l| l.len() <= 80));
        assert!(
            wrapped
                .lines()
                .nth(1)
                .unwrap()
                .starts_with("          word")
        );
    }
}
