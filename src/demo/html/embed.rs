//! How a flame graph gets onto the page. inferno's SVG documents carry scripts that use global
//! names and element ids, so each one is shown in an `<iframe srcdoc>` of its own, filled from
//! the JSON block `#flame-data` the first time it is opened.

use std::collections::BTreeMap;

use super::escape::esc;
use crate::demo::flame::{self, FlameSvg};
use crate::demo::folded::Folded;

/// One frame's document, as `report.js` reads it from `#flame-data`.
#[derive(serde::Serialize)]
struct FlameEntry {
    doc: String,
    height: u32,
}

/// The flame graphs of the page, by element id, for `#flame-data`.
#[derive(Default)]
pub struct Flames(BTreeMap<String, FlameEntry>);

impl Flames {
    /// Renders `folded` under `id`; false when it holds no CPU.
    pub fn add(
        &mut self,
        id: &str,
        folded: &Folded,
        title: &str,
        subtitle: &str,
    ) -> Result<bool, String> {
        match flame::render(folded, title, subtitle)
            .map_err(|e| format!("cannot render the flame graph {id}: {e}"))?
        {
            Some(svg) => {
                self.insert(id, &svg);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    pub fn insert(&mut self, id: &str, svg: &FlameSvg) {
        self.0.insert(id.to_owned(), flame_doc(svg));
    }

    /// The content of the `#flame-data` script block.
    pub fn to_json(&self) -> Result<String, String> {
        let data = serde_json::to_string(&self.0)
            .map_err(|e| format!("cannot encode the flame graphs: {e}"))?;
        // Inside <script>, "</script" or "<!--" would end or bend the block: no '<' at all.
        Ok(data.replace('<', "\\u003c"))
    }
}

fn flame_doc(svg: &FlameSvg) -> FlameEntry {
    FlameEntry {
        doc: format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><style>html,body{{margin:0;background:#fff}}svg{{display:block;width:100%}}</style></head><body>{}</body></html>",
            svg.svg
        ),
        height: svg.height,
    }
}

/// A flame graph's place on the page: an empty frame, filled on first show.
pub fn flame_box(id: &str, caption: &str, hidden: bool) -> String {
    format!(
        "<div class=\"flame\" id=\"{id}\"{hidden}><div class=\"flame-caption\">{caption}</div><iframe title=\"{title}\" loading=\"eager\"></iframe></div>",
        id = esc(id),
        hidden = if hidden { " hidden" } else { "" },
        caption = caption,
        title = esc(&format!("flame graph {id}")),
    )
}

pub fn empty_box(id: &str, caption: &str, hidden: bool) -> String {
    format!(
        "<div class=\"flame empty\" id=\"{}\"{}><div class=\"flame-caption\">{caption}</div><p class=\"note\">No CPU samples.</p></div>",
        esc(id),
        if hidden { " hidden" } else { "" },
    )
}

/// The frame for `id` if [`Flames::add`] rendered it, else the note that it has no CPU.
pub fn flame_or_empty(has_flame: bool, id: &str, caption: &str, hidden: bool) -> String {
    if has_flame {
        flame_box(id, caption, hidden)
    } else {
        empty_box(id, caption, hidden)
    }
}
