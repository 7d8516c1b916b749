//! Turns a runbook file into a validated [`Runbook`], or one clear [`InputError`].

use super::raw::{RawCondition, RawRunbookFile, RawStep};
use super::{Condition, Param, Runbook, Shell, Step, Template, Var, Variant};
use crate::error::{InputError, Source, out_of_range};
use crate::fleet::{Edition, NAME_SYNTAX, Role};
use crate::time::parse_positive_duration;
use std::collections::{BTreeMap, HashSet};
use toml::Spanned;

/// How often a gate is tried when the runbook does not say.
const DEFAULT_GATE_INTERVAL: u64 = 10_000;

pub fn load_runbook(file: &str, text: &str) -> Result<Runbook, InputError> {
    let src = Source::new(file, text);
    let raw: RawRunbookFile = toml::from_str(text).map_err(|e| src.toml_error(&e))?;
    let header = raw.runbook;

    let name = header.name.get_ref();
    if !crate::fleet::is_valid_name(name) {
        return Err(src
            .error(Some(header.name.span().start), "runbook.name")
            .value(name)
            .message(NAME_SYNTAX));
    }
    let shell = match header.shell.get_ref().as_str() {
        "powershell" => Shell::PowerShell,
        "sh" => Shell::Sh,
        other => {
            return Err(src
                .error(Some(header.shell.span().start), "runbook.shell")
                .value(other)
                .message("unknown shell; expected \"powershell\" or \"sh\""));
        }
    };
    let duration = |value: &Spanned<String>, field: &str| {
        parse_positive_duration(value.get_ref()).map_err(|why| {
            src.error(Some(value.span().start), field)
                .value(value.get_ref())
                .message(why)
        })
    };
    let expected_duration = header
        .expected_duration
        .as_ref()
        .map(|d| duration(d, "runbook.expected_duration"))
        .transpose()?;
    let mut expected_duration_by_role = BTreeMap::new();
    for (role_name, value) in &header.expected_duration_by_role {
        let role = Role::parse(role_name).ok_or_else(|| {
            src.error(
                Some(value.span().start),
                "runbook.expected_duration_by_role",
            )
            .value(role_name)
            .message(format!("unknown role; expected one of {}", role_list()))
        })?;
        expected_duration_by_role
            .insert(role, duration(value, "runbook.expected_duration_by_role")?);
    }

    let params: Vec<Param> = raw
        .params
        .iter()
        .map(|(name, p)| {
            if !crate::fleet::is_valid_name(name) {
                return Err(src
                    .error(Some(p.span().start), "params")
                    .value(name)
                    .message("a parameter name is letters, digits, '-', '_' or '.'"));
            }
            Ok(Param {
                name: name.clone(),
                default: p.get_ref().default.clone(),
                description: p.get_ref().description.clone(),
            })
        })
        .collect::<Result<_, _>>()?;
    let param_names: HashSet<&str> = params.iter().map(|p| p.name.as_str()).collect();

    if raw.step.is_empty() {
        return Err(src
            .error(None, "step")
            .message("the runbook has no steps: add at least one [[step]]"));
    }
    let mut seen_ids = HashSet::new();
    let mut steps = Vec::with_capacity(raw.step.len());
    for raw_step in &raw.step {
        let step = load_step(&src, raw_step, &param_names)?;
        if !seen_ids.insert(step.id.clone()) {
            return Err(src
                .error(Some(raw_step.get_ref().id.span().start), "step.id")
                .value(&step.id)
                .message("step ids must be unique within a runbook"));
        }
        steps.push(step);
    }

    Ok(Runbook {
        file: file.to_string(),
        name: name.clone(),
        description: header.description,
        shell,
        expected_duration,
        expected_duration_by_role,
        params,
        steps,
    })
}

fn role_list() -> String {
    Role::ALL
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn load_step(
    src: &Source<'_>,
    raw_step: &Spanned<RawStep>,
    params: &HashSet<&str>,
) -> Result<Step, InputError> {
    let raw = raw_step.get_ref();
    let id = raw.id.get_ref();
    if !crate::fleet::is_valid_name(id) {
        return Err(src
            .error(Some(raw.id.span().start), "step.id")
            .value(id)
            .message("a step id is letters, digits, '-', '_' or '.'"));
    }
    let owner = format!("step {id:?}");
    let timeout = parse_positive_duration(raw.timeout.get_ref()).map_err(|why| {
        src.error(Some(raw.timeout.span().start), "step.timeout")
            .owner(&owner)
            .value(raw.timeout.get_ref())
            .message(why)
    })?;
    let retries = match &raw.retries {
        None => 0,
        Some(r) => match out_of_range(*r.get_ref(), 0) {
            Some(why) => {
                return Err(src
                    .error(Some(r.span().start), "step.retries")
                    .owner(&owner)
                    .value(r.get_ref())
                    .message(why));
            }
            None => *r.get_ref() as u32,
        },
    };
    let gate_interval = match raw.kind.as_ref().map(|k| (k, k.get_ref().as_str())) {
        None | Some((_, "command")) => {
            if let Some(interval) = &raw.interval {
                return Err(src
                    .error(Some(interval.span().start), "step.interval")
                    .owner(&owner)
                    .value(interval.get_ref())
                    .message("only a step with kind = \"gate\" has an interval"));
            }
            None
        }
        Some((_, "gate")) => {
            if let Some(r) = &raw.retries {
                return Err(src
                    .error(Some(r.span().start), "step.retries")
                    .owner(&owner)
                    .value(r.get_ref())
                    .message(
                        "a gate is tried every `interval` until its timeout; it has no retries",
                    ));
            }
            Some(match &raw.interval {
                None => DEFAULT_GATE_INTERVAL,
                Some(interval) => parse_positive_duration(interval.get_ref()).map_err(|why| {
                    src.error(Some(interval.span().start), "step.interval")
                        .owner(&owner)
                        .value(interval.get_ref())
                        .message(why)
                })?,
            })
        }
        Some((kind, other)) => {
            return Err(src
                .error(Some(kind.span().start), "step.kind")
                .owner(&owner)
                .value(other)
                .message("unknown kind; expected \"command\" or \"gate\""));
        }
    };

    let template = |run: &Spanned<String>, field: &str| -> Result<Template, InputError> {
        let template = Template::parse(run.get_ref()).map_err(|why| {
            src.error(Some(run.span().start), field)
                .owner(&owner)
                .value(run.get_ref())
                .message(why)
        })?;
        if let Some(Var::Param(unknown)) = template
            .vars()
            .find(|v| matches!(v, Var::Param(p) if !params.contains(p.as_str())))
        {
            return Err(src
                .error(Some(run.span().start), field)
                .owner(&owner)
                .value(run.get_ref())
                .message(format!(
                    "uses params.{unknown}, which no [params.{unknown}] table declares"
                )));
        }
        Ok(template)
    };

    let variants = match (&raw.run, raw.variant.is_empty()) {
        (Some(run), true) => vec![Variant {
            name: None,
            when: condition(
                src,
                raw.when.as_ref().map(Spanned::get_ref),
                "step.when",
                &owner,
            )?,
            run: template(run, "step.run")?,
        }],
        (None, false) => {
            if let Some(when) = &raw.when {
                return Err(src
                    .error(Some(when.span().start), "step.when")
                    .owner(&owner)
                    .message(
                        "put `when` on each [[step.variant]], not on a step that has variants",
                    ));
            }
            raw.variant
                .iter()
                .map(|v| {
                    let v = v.get_ref();
                    Ok(Variant {
                        name: v.name.clone(),
                        when: condition(src, v.when.as_ref(), "step.variant.when", &owner)?,
                        run: template(&v.run, "step.variant.run")?,
                    })
                })
                .collect::<Result<_, InputError>>()?
        }
        (Some(run), false) => {
            return Err(src
                .error(Some(run.span().start), "step.run")
                .owner(&owner)
                .message("a step has either `run` or [[step.variant]] entries, not both"));
        }
        (None, true) => {
            return Err(src
                .error(Some(raw_step.span().start), "step.run")
                .owner(&owner)
                .message("missing: give the step a `run` command or [[step.variant]] entries"));
        }
    };

    // A gate only checks, so running it again is safe unless the runbook says otherwise.
    let idempotent = raw.idempotent.unwrap_or(gate_interval.is_some());
    Ok(Step {
        id: id.clone(),
        timeout,
        retries,
        gate_interval,
        idempotent,
        variants,
    })
}

/// `field` is where the condition sits (`step.when` or `step.variant.when`).
fn condition(
    src: &Source<'_>,
    raw: Option<&RawCondition>,
    field: &str,
    owner: &str,
) -> Result<Condition, InputError> {
    let Some(raw) = raw else {
        return Ok(Condition::default());
    };
    let roles = match &raw.role {
        None => None,
        Some(roles) => Some(
            roles
                .get_ref()
                .items()
                .into_iter()
                .map(|name| {
                    Role::parse(name).ok_or_else(|| {
                        src.error(Some(roles.span().start), format!("{field}.role"))
                            .owner(owner)
                            .value(name)
                            .message(format!("unknown role; expected one of {}", role_list()))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let edition = match &raw.edition {
        None => None,
        Some(e) => Some(Edition::parse(e.get_ref()).ok_or_else(|| {
            src.error(Some(e.span().start), format!("{field}.edition"))
                .owner(owner)
                .value(e.get_ref())
                .message(Edition::EXPECTED)
        })?),
    };
    Ok(Condition {
        roles,
        edition,
        collocated_databases: raw.collocated_databases,
    })
}
