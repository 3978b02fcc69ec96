//! What a backend checks before it trusts an OTLP profiles request: every index in range, ids of
//! the right length, and the zero entries that let index 0 mean "unset". A receiver that let a
//! sloppy exporter through would hide the bug until a real backend dropped its data.

use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::profiles::v1development::{Profile, ProfilesDictionary, Sample};

use super::dictionary::is_null_link;

const TRACE_ID_BYTES: usize = 16;
const SPAN_ID_BYTES: usize = 8;

/// The dictionary's tables, to name the one an index missed.
#[derive(Debug, Clone, Copy)]
enum Table {
    Strings,
    Mappings,
    Locations,
    Functions,
    Links,
    Attributes,
    Stacks,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Strings => "string_table",
            Table::Mappings => "mapping_table",
            Table::Locations => "location_table",
            Table::Functions => "function_table",
            Table::Links => "link_table",
            Table::Attributes => "attribute_table",
            Table::Stacks => "stack_table",
        }
    }

    fn len(self, d: &ProfilesDictionary) -> usize {
        match self {
            Table::Strings => d.string_table.len(),
            Table::Mappings => d.mapping_table.len(),
            Table::Locations => d.location_table.len(),
            Table::Functions => d.function_table.len(),
            Table::Links => d.link_table.len(),
            Table::Attributes => d.attribute_table.len(),
            Table::Stacks => d.stack_table.len(),
        }
    }
}

/// `Err` names the first problem found and where (`link_table[0] is not the empty link ...`,
/// `resource_profiles[0].scope_profiles[0].profiles[0].samples[1].stack_index 9 is out of
/// range: stack_table has 2 entries`), for the client's error and [`Capture::rejections`].
///
/// [`Capture::rejections`]: super::Capture::rejections
pub(super) fn check(request: &ExportProfilesServiceRequest) -> Result<(), String> {
    let empty = ProfilesDictionary::default();
    let dictionary = request.dictionary.as_ref().unwrap_or(&empty);
    zero_entries(dictionary)?;
    let check = Check { dictionary };
    check.tables()?;
    for (r, resource_profiles) in request.resource_profiles.iter().enumerate() {
        let at = || format!("resource_profiles[{r}]");
        if let Some(resource) = &resource_profiles.resource {
            let at = || format!("{}.resource.attributes", at());
            check.key_values(&resource.attributes, &at)?;
        }
        for (s, scope_profiles) in resource_profiles.scope_profiles.iter().enumerate() {
            for (p, profile) in scope_profiles.profiles.iter().enumerate() {
                let at = || format!("{}.scope_profiles[{s}].profiles[{p}]", at());
                check.profile(profile, &at)?;
            }
        }
    }
    Ok(())
}

/// Every table's entry 0 must be its zero value, which is what index 0 ("unset") points at. An
/// empty table passes: index 0 into it still reads as unset, and any other index is caught as
/// out of range.
fn zero_entries(d: &ProfilesDictionary) -> Result<(), String> {
    fn zero<T: Default + PartialEq>(table: &[T], name: &str) -> Result<(), String> {
        match table.first() {
            Some(first) if *first != T::default() => Err(format!(
                "{name}[0] is not the zero value that index 0 (unset) must point at"
            )),
            _ => Ok(()),
        }
    }
    if let Some(first) = d.string_table.first().filter(|s| !s.is_empty()) {
        return Err(format!(r#"string_table[0] is {first:?}, not """#));
    }
    if let Some(first) = d.link_table.first().filter(|link| !is_null_link(link)) {
        let (trace_id, span_id) = (hex::encode(&first.trace_id), hex::encode(&first.span_id));
        return Err(format!(
            "link_table[0] is not the empty link (trace_id {trace_id:?}, span_id {span_id:?}): \
             index 0 must mean no link"
        ));
    }
    zero(&d.mapping_table, Table::Mappings.name())?;
    zero(&d.location_table, Table::Locations.name())?;
    zero(&d.function_table, Table::Functions.name())?;
    zero(&d.attribute_table, Table::Attributes.name())?;
    zero(&d.stack_table, Table::Stacks.name())
}

struct Check<'a> {
    dictionary: &'a ProfilesDictionary,
}

/// Where in the request a field sits (`location_table[3]`), built only for an error message.
type At<'a> = &'a dyn Fn() -> String;

impl Check<'_> {
    /// Index 0 is "unset" even where the table is empty and so lacks its zero entry.
    fn in_range(&self, table: Table, index: i32) -> bool {
        index == 0 || usize::try_from(index).is_ok_and(|i| i < table.len(self.dictionary))
    }

    fn index(&self, table: Table, index: i32, at: At, field: &str) -> Result<(), String> {
        if self.in_range(table, index) {
            return Ok(());
        }
        Err(format!(
            "{}.{field} {index} is out of range: {} has {} entries",
            at(),
            table.name(),
            table.len(self.dictionary)
        ))
    }

    fn indices(&self, table: Table, indices: &[i32], at: At, field: &str) -> Result<(), String> {
        match indices
            .iter()
            .position(|&index| !self.in_range(table, index))
        {
            Some(i) => self.index(table, indices[i], at, &format!("{field}[{i}]")),
            None => Ok(()),
        }
    }

    /// String-table references inside a value, however deeply nested.
    fn value(&self, value: Option<&AnyValue>, at: At) -> Result<(), String> {
        match value.and_then(|v| v.value.as_ref()) {
            Some(Value::StringValueStrindex(index)) => {
                self.index(Table::Strings, *index, at, "string_value_strindex")
            }
            Some(Value::ArrayValue(array)) => array
                .values
                .iter()
                .enumerate()
                .try_for_each(|(i, v)| self.value(Some(v), &|| format!("{}[{i}]", at()))),
            Some(Value::KvlistValue(list)) => self.key_values(&list.values, at),
            _ => Ok(()),
        }
    }

    fn key_values(&self, pairs: &[KeyValue], at: At) -> Result<(), String> {
        pairs
            .iter()
            .try_for_each(|kv| self.value(kv.value.as_ref(), &|| format!("{}[{:?}]", at(), kv.key)))
    }

    /// Every entry of every table, referenced or not: a backend stores the dictionary whole.
    fn tables(&self) -> Result<(), String> {
        use Table::{Attributes, Functions, Locations, Mappings, Strings};
        let d = self.dictionary;
        for (i, mapping) in d.mapping_table.iter().enumerate() {
            let at = || format!("mapping_table[{i}]");
            self.index(Strings, mapping.filename_strindex, &at, "filename_strindex")?;
            self.indices(
                Attributes,
                &mapping.attribute_indices,
                &at,
                "attribute_indices",
            )?;
        }
        for (i, location) in d.location_table.iter().enumerate() {
            let at = || format!("location_table[{i}]");
            self.index(Mappings, location.mapping_index, &at, "mapping_index")?;
            self.indices(
                Attributes,
                &location.attribute_indices,
                &at,
                "attribute_indices",
            )?;
            for (l, line) in location.lines.iter().enumerate() {
                let at = || format!("location_table[{i}].lines[{l}]");
                self.index(Functions, line.function_index, &at, "function_index")?;
            }
        }
        for (i, function) in d.function_table.iter().enumerate() {
            let at = || format!("function_table[{i}]");
            self.index(Strings, function.name_strindex, &at, "name_strindex")?;
            self.index(
                Strings,
                function.system_name_strindex,
                &at,
                "system_name_strindex",
            )?;
            self.index(
                Strings,
                function.filename_strindex,
                &at,
                "filename_strindex",
            )?;
        }
        for (i, attribute) in d.attribute_table.iter().enumerate() {
            let at = || format!("attribute_table[{i}]");
            self.index(Strings, attribute.key_strindex, &at, "key_strindex")?;
            self.index(Strings, attribute.unit_strindex, &at, "unit_strindex")?;
            self.value(attribute.value.as_ref(), &|| format!("{}.value", at()))?;
        }
        for (i, stack) in d.stack_table.iter().enumerate() {
            let at = || format!("stack_table[{i}]");
            self.indices(Locations, &stack.location_indices, &at, "location_indices")?;
        }
        links(d)
    }

    fn profile(&self, profile: &Profile, at: At) -> Result<(), String> {
        for (field, value_type) in [
            ("sample_type", &profile.sample_type),
            ("period_type", &profile.period_type),
        ] {
            if let Some(value_type) = value_type {
                let at = || format!("{}.{field}", at());
                self.index(
                    Table::Strings,
                    value_type.type_strindex,
                    &at,
                    "type_strindex",
                )?;
                self.index(
                    Table::Strings,
                    value_type.unit_strindex,
                    &at,
                    "unit_strindex",
                )?;
            }
        }
        self.indices(
            Table::Attributes,
            &profile.attribute_indices,
            at,
            "attribute_indices",
        )?;
        for (i, sample) in profile.samples.iter().enumerate() {
            self.sample(sample, &|| format!("{}.samples[{i}]", at()))?;
        }
        Ok(())
    }

    fn sample(&self, sample: &Sample, at: At) -> Result<(), String> {
        self.index(Table::Stacks, sample.stack_index, at, "stack_index")?;
        self.index(Table::Links, sample.link_index, at, "link_index")?;
        self.indices(
            Table::Attributes,
            &sample.attribute_indices,
            at,
            "attribute_indices",
        )?;
        let (values, timestamps) = (sample.values.len(), sample.timestamps_unix_nano.len());
        // The spec's two MUSTs on a sample's shape: some data, and values paired with timestamps.
        if values == 0 && timestamps == 0 {
            return Err(format!("{} has neither values nor timestamps", at()));
        }
        if values != 0 && timestamps != 0 && values != timestamps {
            return Err(format!(
                "{} has {values} values but {timestamps} timestamps",
                at()
            ));
        }
        Ok(())
    }
}

/// Ids of the length their kind has, past the null link at index 0, so a linked sample names a
/// span a trace backend could hold.
fn links(d: &ProfilesDictionary) -> Result<(), String> {
    for (i, link) in d.link_table.iter().enumerate().skip(1) {
        for (field, id, want) in [
            ("trace_id", &link.trace_id, TRACE_ID_BYTES),
            ("span_id", &link.span_id, SPAN_ID_BYTES),
        ] {
            if id.len() != want {
                return Err(format!(
                    "link_table[{i}].{field} has {} bytes, not {want}",
                    id.len()
                ));
            }
        }
    }
    Ok(())
}
