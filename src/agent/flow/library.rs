//! The flows a voxgate instance offers: the shipped `demo`, always, and every `*.toml` in
//! `agent.flows_dir`.
//!
//! Loaded once at start-up; a flow that does not validate stops start-up with an error
//! naming the file, the node and the reason, rather than failing one call later. A file in
//! the folder may replace the shipped `demo` by naming itself `demo`; two files of one name
//! are an error. Files are read whole, so each is capped at [`MAX_FILE_BYTES`].

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::error::FlowError;
use super::validate::{Flow, parse_file};

/// The shipped demo flow's text.
pub const DEMO_TOML: &str = include_str!("../../../examples/flows/demo.toml");
/// The shipped demo flow's name.
pub const DEMO: &str = "demo";
/// The largest flow file read.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

const BUILT_IN: &str = "(built-in) examples/flows/demo.toml";

/// The loaded flows, by name.
#[derive(Debug, Clone)]
pub struct Flows {
    flows: BTreeMap<String, Arc<Flow>>,
}

impl Flows {
    /// The shipped `demo`, plus every `*.toml` in `dir` when given.
    pub fn load(dir: Option<&Path>) -> Result<Flows, FlowError> {
        let demo = parse_file(BUILT_IN, DEMO, DEMO_TOML)?;
        let mut flows = BTreeMap::from([(DEMO.to_owned(), Arc::new(demo))]);
        let Some(dir) = dir else {
            return Ok(Flows { flows });
        };
        let unreadable = |file: &Path, e: std::io::Error| FlowError::Unreadable {
            file: file.display().to_string(),
            reason: e.to_string(),
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| unreadable(dir, e))? {
            let path = entry.map_err(|e| unreadable(dir, e))?.path();
            if path.extension().is_some_and(|ext| ext == "toml") && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        for path in paths {
            let file = path.display().to_string();
            let size = std::fs::metadata(&path)
                .map_err(|e| unreadable(&path, e))?
                .len();
            if size > MAX_FILE_BYTES {
                return Err(FlowError::Unreadable {
                    file,
                    reason: format!(
                        "{size} bytes is more than the {MAX_FILE_BYTES} a flow may have"
                    ),
                });
            }
            let text = std::fs::read_to_string(&path).map_err(|e| unreadable(&path, e))?;
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let flow = parse_file(&file, &stem, &text)?;
            if let Some(other) = flows.get(flow.name()).filter(|f| f.file() != BUILT_IN) {
                return Err(FlowError::Duplicate {
                    file,
                    name: flow.name().to_owned(),
                    other: other.file().to_owned(),
                });
            }
            flows.insert(flow.name().to_owned(), Arc::new(flow));
        }
        Ok(Flows { flows })
    }

    /// The flow called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Flow>> {
        self.flows.get(name).cloned()
    }

    /// Every flow's name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.flows.keys().map(String::as_str)
    }
}
