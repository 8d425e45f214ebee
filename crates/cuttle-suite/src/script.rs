//! teuthology's fragment scripts, run in an embedded Lua sandbox.
//!
//! A fragment may carry `teuthology: {premerge: SCRIPT}` (run before it is merged; a
//! rejection drops the fragment) and `teuthology: {postmerge: [SCRIPT, ...]}` (joined
//! and run once the job is merged; a rejection drops the job). Scripts see the job's
//! `description`, `base_frag_paths`, `frag_paths`, `suite_name`, the merged `yaml` (and
//! the fragment as `yaml_fragment` in premerge), the filter options and `base_config`,
//! and may change `yaml`. The sandbox holds teuthology's allowlist and nothing more: no
//! `io`, `os`, `require`, `load` or `debug`. Each run is bounded in instructions, and
//! the state in memory, so a script that loops or allocates forever is stopped with
//! an error naming its fragment.

use std::cell::Cell;
use std::rc::Rc;

use mlua::{HookTriggers, Lua, Table, VmState};
use serde_yaml::{Mapping, Number, Value};

use crate::merge::key_text;

/// Instructions one script run may execute (a real one needs a few thousand).
pub const MAX_INSTRUCTIONS: u64 = 50_000_000;
/// Memory the Lua state may hold, all scripts of an expansion together.
pub const MAX_MEMORY: usize = 64 << 20;
const HOOK_EVERY: u32 = 10_000;

/// A script failed: it did not compile, raised an error, or hit a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{script} script of {whose} failed: {message}")]
pub struct ScriptError {
    pub script: &'static str,
    pub whose: String,
    pub message: String,
}

/// What every script of one job sees.
#[derive(Debug, Clone, Copy)]
pub struct JobScope<'a> {
    pub description: &'a str,
    pub base_frag_paths: &'a [String],
    pub frag_paths: &'a [String],
    pub suite_name: &'a str,
    pub filter_in: &'a [String],
    pub filter_out: &'a [String],
    pub filter_all: &'a [String],
    pub filter_fragments: bool,
    pub seed: u64,
    pub base_config: &'a Value,
    pub os_type: Option<&'a str>,
    pub os_version: Option<&'a str>,
}

/// One Lua state for a whole expansion.
pub struct Sandbox {
    lua: Lua,
    module: Table,
    used: Rc<Cell<u64>>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").finish_non_exhaustive()
    }
}

fn lua_message(error: &mlua::Error) -> String {
    match error {
        mlua::Error::CallbackError { cause, .. } => lua_message(cause),
        mlua::Error::RuntimeError(message) | mlua::Error::SyntaxError { message, .. } => {
            message.clone()
        }
        mlua::Error::MemoryError(_) => {
            format!("it needed more than {} MiB of memory", MAX_MEMORY >> 20)
        }
        other => other.to_string(),
    }
}

impl Sandbox {
    pub fn new() -> Result<Self, ScriptError> {
        let fail = |e: mlua::Error| ScriptError {
            script: "setup",
            whose: "the sandbox".into(),
            message: lua_message(&e),
        };
        let lua = Lua::new();
        let module: Table = lua
            .load(include_str!("script.lua"))
            .set_name("=cuttle-sandbox")
            .eval()
            .map_err(fail)?;
        let used = Rc::new(Cell::new(0u64));
        let counter = used.clone();
        lua.set_hook(
            HookTriggers::new().every_nth_instruction(HOOK_EVERY),
            move |_, _| {
                let now = counter.get() + u64::from(HOOK_EVERY);
                counter.set(now);
                if now > MAX_INSTRUCTIONS {
                    return Err(mlua::Error::runtime(format!(
                        "it ran past {MAX_INSTRUCTIONS} Lua instructions (does it loop forever?)"
                    )));
                }
                Ok(VmState::Continue)
            },
        );
        let sandbox = Self { lua, module, used };
        let yaml_load = sandbox
            .lua
            .create_function(|lua, text: String| {
                let value: Value = serde_yaml::from_str(&text).map_err(mlua::Error::external)?;
                let module: Table = lua.named_registry_value("cuttle_module")?;
                to_lua(lua, &module, &value)
            })
            .map_err(fail)?;
        sandbox
            .lua
            .set_named_registry_value("cuttle_module", sandbox.module.clone())
            .map_err(fail)?;
        let set: mlua::Function = sandbox.module.get("set_yaml_load").map_err(fail)?;
        set.call::<()>(yaml_load).map_err(fail)?;
        sandbox.lua.set_memory_limit(MAX_MEMORY).map_err(fail)?;
        Ok(sandbox)
    }

    /// Seeds the `math.random` scripts draw from, as teuthology seeds it with `--seed`
    /// once per expansion.
    pub fn seed_random(&self, seed: u64) -> Result<(), ScriptError> {
        self.lua
            .load(format!("math.randomseed({seed})"))
            .set_name("=cuttle-seed")
            .exec()
            .map_err(|e| ScriptError {
                script: "setup",
                whose: "the sandbox".into(),
                message: lua_message(&e),
            })
    }

    fn globals(&self, scope: &JobScope<'_>) -> mlua::Result<Table> {
        let lua = &self.lua;
        let strings = |items: &[String]| -> mlua::Result<Table> {
            let list = self.new_list()?;
            for (i, item) in items.iter().enumerate() {
                list.raw_set(i + 1, item.as_str())?;
            }
            Ok(list)
        };
        let globals = lua.create_table()?;
        globals.set("description", scope.description)?;
        globals.set("base_frag_paths", strings(scope.base_frag_paths)?)?;
        globals.set("frag_paths", strings(scope.frag_paths)?)?;
        globals.set("suite_name", scope.suite_name)?;
        globals.set("filter_in", strings(scope.filter_in)?)?;
        globals.set("filter_out", strings(scope.filter_out)?)?;
        globals.set("filter_all", strings(scope.filter_all)?)?;
        globals.set("filter_fragments", scope.filter_fragments)?;
        globals.set("seed", scope.seed)?;
        globals.set("base_config", to_lua(lua, &self.module, scope.base_config)?)?;
        Ok(globals)
    }

    fn new_list(&self) -> mlua::Result<Table> {
        let list: mlua::Function = self.module.get("list")?;
        list.call(())
    }

    fn run(&self, source: &str, chunk: &str, globals: Table) -> mlua::Result<bool> {
        self.used.set(0);
        let run: mlua::Function = self.module.get("run")?;
        let verdict = run.call((source, format!("={chunk}"), globals));
        // Give back what the script allocated before the next one runs.
        self.lua.gc_collect()?;
        verdict
    }

    /// Runs a fragment's premerge script against the job merged so far. `Ok(false)`
    /// drops the fragment. The script may change both `yaml` and `fragment`.
    pub fn premerge(
        &self,
        source: &str,
        fragment_name: &str,
        scope: &JobScope<'_>,
        yaml: &mut Value,
        fragment: &mut Value,
    ) -> Result<bool, ScriptError> {
        let fail = |e: mlua::Error| ScriptError {
            script: "premerge",
            whose: fragment_name.to_owned(),
            message: lua_message(&e),
        };
        let globals = self.globals(scope).map_err(fail)?;
        let yaml_table = to_lua(&self.lua, &self.module, yaml).map_err(fail)?;
        let fragment_table = to_lua(&self.lua, &self.module, fragment).map_err(fail)?;
        globals.set("yaml", yaml_table.clone()).map_err(fail)?;
        globals
            .set("yaml_fragment", fragment_table.clone())
            .map_err(fail)?;
        let verdict = self.run(source, fragment_name, globals).map_err(fail)?;
        *yaml = from_lua(&self.module, yaml_table, Some(yaml)).map_err(fail)?;
        *fragment = from_lua(&self.module, fragment_table, Some(fragment)).map_err(fail)?;
        Ok(verdict)
    }

    /// Runs a job's joined postmerge scripts. `Ok(false)` drops the job.
    pub fn postmerge(
        &self,
        source: &str,
        scope: &JobScope<'_>,
        yaml: &mut Value,
    ) -> Result<bool, ScriptError> {
        let fail = |e: mlua::Error| ScriptError {
            script: "postmerge",
            whose: scope.description.to_owned(),
            message: lua_message(&e),
        };
        let globals = self.globals(scope).map_err(fail)?;
        if let Some(os_type) = scope.os_type {
            globals.set("os_type", os_type).map_err(fail)?;
        }
        if let Some(os_version) = scope.os_version {
            globals.set("os_version", os_version).map_err(fail)?;
        }
        let yaml_table = to_lua(&self.lua, &self.module, yaml).map_err(fail)?;
        globals.set("yaml", yaml_table.clone()).map_err(fail)?;
        let verdict = self.run(source, scope.description, globals).map_err(fail)?;
        *yaml = from_lua(&self.module, yaml_table, Some(yaml)).map_err(fail)?;
        Ok(verdict)
    }

    /// Lua's `text:find(pattern)`, which `--filter-fragments` matches paths with.
    pub fn pattern_finds(&self, text: &str, pattern: &str) -> Result<bool, ScriptError> {
        let find: mlua::Function = self
            .module
            .get("find")
            .map_err(|e| self.filter_error(pattern, &e))?;
        self.used.set(0);
        find.call((text, pattern))
            .map_err(|e| self.filter_error(pattern, &e))
    }

    fn filter_error(&self, pattern: &str, e: &mlua::Error) -> ScriptError {
        ScriptError {
            script: "filter",
            whose: format!("the --filter-fragments pattern {pattern:?}"),
            message: lua_message(e),
        }
    }
}

fn to_lua(lua: &Lua, module: &Table, value: &Value) -> mlua::Result<mlua::Value> {
    Ok(match value {
        Value::Null => mlua::Value::NULL,
        Value::Bool(b) => mlua::Value::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => mlua::Value::Integer(i),
            (None, Some(f)) => mlua::Value::Number(f),
            (None, None) => mlua::Value::Nil,
        },
        Value::String(s) => mlua::Value::String(lua.create_string(s)?),
        Value::Sequence(items) => {
            let list: Table = module.get::<mlua::Function>("list")?.call(())?;
            for (i, item) in items.iter().enumerate() {
                list.raw_set(i + 1, to_lua(lua, module, item)?)?;
            }
            mlua::Value::Table(list)
        }
        Value::Mapping(map) => {
            let dict: Table = module.get::<mlua::Function>("dict")?.call(())?;
            for (key, item) in map {
                // A null member is absent in Lua, as a None is to teuthology's scripts.
                if item.is_null() {
                    continue;
                }
                dict.raw_set(to_lua(lua, module, key)?, to_lua(lua, module, item)?)?;
            }
            mlua::Value::Table(dict)
        }
        Value::Tagged(tagged) => to_lua(lua, module, &tagged.value)?,
    })
}

/// Back from Lua, keeping the original's key order for the keys it still has (and its
/// null members), with new keys after them in sorted order.
fn from_lua(module: &Table, value: mlua::Value, original: Option<&Value>) -> mlua::Result<Value> {
    Ok(match value {
        mlua::Value::Nil => Value::Null,
        mlua::Value::LightUserData(ptr) if ptr.0.is_null() => Value::Null,
        mlua::Value::Boolean(b) => Value::Bool(b),
        mlua::Value::Integer(i) => Value::Number(Number::from(i)),
        mlua::Value::Number(f) => Value::Number(Number::from(f)),
        mlua::Value::String(s) => Value::String(s.to_string_lossy()),
        mlua::Value::Table(table) => {
            let is_list: bool = module
                .get::<mlua::Function>("is_list")?
                .call(table.clone())?;
            if is_list {
                let originals = original.and_then(Value::as_sequence);
                let mut items = Vec::new();
                for (i, item) in table.sequence_values::<mlua::Value>().enumerate() {
                    items.push(from_lua(module, item?, originals.and_then(|o| o.get(i)))?);
                }
                Value::Sequence(items)
            } else {
                let originals = original.and_then(Value::as_mapping);
                let mut entries: Vec<(Value, mlua::Value)> = Vec::new();
                for pair in table.pairs::<mlua::Value, mlua::Value>() {
                    let (key, item) = pair?;
                    entries.push((from_lua(module, key, None)?, item));
                }
                let mut map = Mapping::new();
                if let Some(originals) = originals {
                    for (key, item) in originals {
                        if item.is_null() {
                            map.insert(key.clone(), Value::Null);
                        } else if let Some(at) = entries.iter().position(|(k, _)| k == key) {
                            let (key, lua_item) = entries.swap_remove(at);
                            map.insert(key, from_lua(module, lua_item, Some(item))?);
                        }
                    }
                }
                entries.sort_by_key(|(key, _)| key_text(key));
                for (key, item) in entries {
                    let converted = from_lua(module, item, None)?;
                    map.insert(key, converted);
                }
                Value::Mapping(map)
            }
        }
        other => {
            return Err(mlua::Error::runtime(format!(
                "a script left a {} in the job config; only tables, strings, numbers and booleans fit in YAML",
                other.type_name()
            )));
        }
    })
}
