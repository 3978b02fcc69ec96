//! Grafana as provisioned: its data sources reach their backends and link spans to the profiles
//! the service pushes, anonymous users are Viewers, and the dashboard asks only for what exists.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::compose::Role;
use crate::query_syntax::{parse_label_selector, traceql_conditions};
use crate::stack::{Speaks, Stack};
use crate::{assert_no_problems, basename, json, strings, yaml};

const DATASOURCES: &str = "grafana/provisioning/datasources/datasources.yaml";
const DASHBOARD_PROVIDERS: &str = "grafana/provisioning/dashboards/dashboards.yaml";
const DASHBOARD: &str = "grafana/dashboards/rideshare.json";

/// The Pyroscope label the Grafana trace-to-profile link selects the service by.
const PYROSCOPE_SERVICE_LABEL: &str = "service_name";
/// The trace resource attribute that names the service.
const SERVICE_NAME_ATTRIBUTE: &str = "service.name";
/// The Profiles Drilldown app (Drilldown > Profiles), which the dashboard links to.
const DRILLDOWN_APP: &str = "grafana-pyroscope-app";
/// Feature toggles Grafana has removed (their features are always on), with the release that
/// dropped them: naming one configures nothing and sends readers after a setting that is gone.
const REMOVED_TOGGLES: &[(&str, &str)] = &[
    ("traceToProfiles", "10.4"),
    ("tracesEmbeddedFlameGraph", "10.4"),
    ("traceToMetrics", "11.0"),
];

fn datasources() -> Vec<Value> {
    yaml(DATASOURCES)["datasources"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("{DATASOURCES} has no `datasources` list"))
}

fn datasource_by_uid(uid: &str) -> Option<Value> {
    datasources().into_iter().find(|d| d["uid"] == uid)
}

/// Every panel, rows' nested panels included.
fn all_panels(dashboard: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    fn walk(panels: &Value, out: &mut Vec<Value>) {
        for p in panels.as_array().into_iter().flatten() {
            out.push(p.clone());
            walk(&p["panels"], out);
        }
    }
    walk(&dashboard["panels"], &mut out);
    out
}

/// (panel title, panel type, target, datasource uid) for every query of the dashboard.
fn dashboard_targets(dashboard: &Value) -> Vec<(String, String, Value, String)> {
    let mut out = Vec::new();
    for p in all_panels(dashboard) {
        let title = p["title"].as_str().unwrap_or("?").to_owned();
        let kind = p["type"].as_str().unwrap_or("?").to_owned();
        for t in p["targets"].as_array().into_iter().flatten() {
            let ds = t["datasource"]["uid"]
                .as_str()
                .or_else(|| p["datasource"]["uid"].as_str())
                .unwrap_or("")
                .to_owned();
            out.push((title.clone(), kind.clone(), t.clone(), ds));
        }
    }
    out
}

#[test]
fn grafana_reaches_its_data_sources_and_links_spans_to_profiles() {
    let stack = Stack::load();
    let mut problems = Vec::new();
    let all = datasources();
    let tempo_ds: Vec<&Value> = all.iter().filter(|d| d["type"] == "tempo").collect();
    assert_eq!(
        tempo_ds.len(),
        1,
        "{DATASOURCES}: expected one Tempo data source"
    );
    let tempo = tempo_ds[0];
    check_datasource_urls(&stack, &all, &mut problems);
    check_traces_to_profiles(&tempo["jsonData"]["tracesToProfiles"], &mut problems);
    assert_no_problems(DATASOURCES, &problems);
}

/// Every data source has a fixed uid and a URL at which Grafana reaches a backend of its type.
fn check_datasource_urls(stack: &Stack, all: &[Value], problems: &mut Vec<String>) {
    for ds in all {
        let name = ds["name"].as_str().unwrap_or("?");
        if ds["uid"].as_str().is_none_or(str::is_empty) {
            problems.push(format!(
                "data source {name}: no fixed uid (links and panels refer to uids)"
            ));
        }
        let speaks = match ds["type"].as_str() {
            Some("tempo") => Speaks::TempoApi,
            Some("grafana-pyroscope-datasource") => Speaks::Pyroscope,
            other => {
                problems.push(format!("data source {name}: unknown type {other:?}"));
                continue;
            }
        };
        let url = ds["url"].as_str().unwrap_or("");
        for grafana in stack.with_role(Role::Grafana) {
            if let Err(e) =
                stack.check_url(&grafana, &format!("data source {name} url"), url, speaks)
            {
                problems.push(e);
            }
        }
    }
}

/// The Tempo data source's `tracesToProfiles` link opens the span's own samples, in the profile
/// type the service pushes, in the Pyroscope data source.
fn check_traces_to_profiles(link: &Value, problems: &mut Vec<String>) {
    if link.is_null() {
        problems.push("Tempo data source: no jsonData.tracesToProfiles".into());
    }
    let target_uid = link["datasourceUid"].as_str().unwrap_or("");
    match datasource_by_uid(target_uid) {
        None => problems.push(format!(
            "tracesToProfiles.datasourceUid {target_uid:?} is no provisioned data source's uid"
        )),
        Some(ds) if ds["type"] != "grafana-pyroscope-datasource" => problems.push(format!(
            "tracesToProfiles.datasourceUid {target_uid:?} is a {} data source, not \
             grafana-pyroscope-datasource",
            ds["type"]
        )),
        Some(_) => {}
    }
    if link["profileTypeId"] != rideshare::vocabulary::PROFILE_TYPE_ID {
        problems.push(format!(
            "tracesToProfiles.profileTypeId is {}, the service pushes {}",
            link["profileTypeId"],
            rideshare::vocabulary::PROFILE_TYPE_ID
        ));
    }
    check_traces_to_profiles_tags(link, problems);
    if link["customQuery"] == true {
        problems.push(
            "tracesToProfiles.customQuery is true: the default query selects the span's own samples"
                .into(),
        );
    }
}

/// The link's tags select the service's profiles by its name, and never by span id.
fn check_traces_to_profiles_tags(link: &Value, problems: &mut Vec<String>) {
    let tags: Vec<(String, String)> = link["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["key"].as_str().unwrap_or("").to_owned(),
                t["value"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    if !tags.contains(&(
        SERVICE_NAME_ATTRIBUTE.to_owned(),
        PYROSCOPE_SERVICE_LABEL.to_owned(),
    )) {
        problems.push(format!(
            "tracesToProfiles.tags {tags:?} must map {SERVICE_NAME_ATTRIBUTE} to the profile label \
             {PYROSCOPE_SERVICE_LABEL}"
        ));
    }
    for (key, label) in &tags {
        if label == tracing_span_profiles::SPAN_ID_LABEL {
            problems.push(format!(
                "tracesToProfiles.tags maps {key} to {label}: span ids are per sample, never series labels"
            ));
        }
    }
}

#[test]
fn grafana_is_provisioned_with_the_drilldown_app_and_anonymous_viewers() {
    let stack = Stack::load();
    let mut problems = Vec::new();
    for grafana in stack.with_role(Role::Grafana) {
        let env = stack.compose.env(&grafana);
        check_grafana_settings(&grafana, &env, &mut problems);
        check_grafana_mounts(&stack, &grafana, &env, &mut problems);
    }
    let dash = json(DASHBOARD);
    if dash["title"] != "Rideshare" || dash["uid"].as_str().is_none_or(str::is_empty) {
        problems.push(format!(
            "{DASHBOARD}: title must be \"Rideshare\" with a fixed uid, is {} / {}",
            dash["title"], dash["uid"]
        ));
    }
    assert_no_problems("Grafana", &problems);
}

/// Anonymous Viewers, and the Profiles Drilldown app installed without stopping Grafana.
fn check_grafana_settings(
    grafana: &str,
    env: &BTreeMap<String, String>,
    problems: &mut Vec<String>,
) {
    let get = |k: &str| env.get(k).cloned().unwrap_or_default();
    if get("GF_AUTH_ANONYMOUS_ENABLED") != "true" {
        problems.push(format!("{grafana}: GF_AUTH_ANONYMOUS_ENABLED must be true"));
    }
    if get("GF_AUTH_ANONYMOUS_ORG_ROLE") != "Viewer" {
        problems.push(format!(
            "{grafana}: GF_AUTH_ANONYMOUS_ORG_ROLE={:?}: anonymous users must be Viewer, \
             not Editor or Admin",
            get("GF_AUTH_ANONYMOUS_ORG_ROLE")
        ));
    }
    check_plugin_install(grafana, &get, problems);
}

/// The Profiles Drilldown app is one of Grafana's default preinstalled plugins, installed in the
/// background, where a failure is only logged. A synchronous install (`preinstall_sync`, what
/// `GF_INSTALL_PLUGINS` migrates to, or every preinstall once `preinstall_async` is false) stops
/// Grafana when it fails, so offline the UI would never come up: none may be configured, and
/// the app must be neither disabled nor left out of the preinstall.
fn check_plugin_install(grafana: &str, get: &dyn Fn(&str) -> String, problems: &mut Vec<String>) {
    for sync in ["GF_PLUGINS_PREINSTALL_SYNC", "GF_INSTALL_PLUGINS"] {
        if !get(sync).trim().is_empty() {
            problems.push(format!(
                "{grafana}: {sync}={:?} installs synchronously: a failed install stops Grafana \
                 (offline, the UI never comes up); use GF_PLUGINS_PREINSTALL",
                get(sync)
            ));
        }
    }
    if get("GF_PLUGINS_PREINSTALL_ASYNC").trim() == "false" {
        problems.push(format!(
            "{grafana}: GF_PLUGINS_PREINSTALL_ASYNC=false makes every preinstall synchronous"
        ));
    }
    if get("GF_PLUGINS_PREINSTALL_DISABLED").trim() == "true" {
        problems.push(format!(
            "{grafana}: GF_PLUGINS_PREINSTALL_DISABLED=true leaves out the Profiles Drilldown app"
        ));
    }
    let disabled = get("GF_PLUGINS_DISABLE_PLUGINS");
    if disabled
        .split([',', ' '])
        .any(|p| p.trim() == DRILLDOWN_APP)
    {
        problems.push(format!(
            "{grafana}: GF_PLUGINS_DISABLE_PLUGINS={disabled:?} disables {DRILLDOWN_APP}"
        ));
    }
}

/// Provisioning is mounted where Grafana reads it, the dashboard provider reads the mounted
/// dashboards, and the home page is the dashboard.
fn check_grafana_mounts(
    stack: &Stack,
    grafana: &str,
    env: &BTreeMap<String, String>,
    problems: &mut Vec<String>,
) {
    let prov_dir = env
        .get("GF_PATHS_PROVISIONING")
        .cloned()
        .unwrap_or_else(|| "/etc/grafana/provisioning".into());
    match stack.compose.mount_target(grafana, "grafana/provisioning") {
        Some(t) if t == prov_dir => {}
        other => problems.push(format!(
            "{grafana}: ./grafana/provisioning must be mounted at {prov_dir}, is at {other:?}"
        )),
    }
    let providers = yaml(DASHBOARD_PROVIDERS);
    let provider_paths: Vec<String> = providers["providers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["options"]["path"].as_str().map(str::to_owned))
        .collect();
    let dash_dir = stack.compose.mount_target(grafana, "grafana/dashboards");
    match &dash_dir {
        Some(d) if provider_paths.contains(d) => {}
        _ => problems.push(format!(
            "{DASHBOARD_PROVIDERS}: provider paths {provider_paths:?} do not include where \
             ./grafana/dashboards is mounted ({dash_dir:?})"
        )),
    }
    let home = env
        .get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
        .cloned()
        .unwrap_or_default();
    let expected_home = dash_dir
        .as_deref()
        .map(|d| format!("{}/{}", d.trim_end_matches('/'), basename(DASHBOARD)));
    if Some(&home) != expected_home.as_ref() {
        problems.push(format!(
            "{grafana}: GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH={home:?}: the home page must \
             be the Rideshare dashboard, {expected_home:?}"
        ));
    }
}

#[test]
fn dashboard_queries_use_only_labels_and_values_the_service_emits() {
    let stack = Stack::load();
    let mut check = DashboardCheck::new(Emitted::by(&stack));
    let dash = json(DASHBOARD);
    let targets = dashboard_targets(&dash);
    assert!(!targets.is_empty(), "{DASHBOARD} has no queries");
    for (title, kind, t, ds_uid) in &targets {
        let Some(ds) = datasource_by_uid(ds_uid) else {
            check.problems.push(format!(
                "panel {title:?}: data source uid {ds_uid:?} is not provisioned"
            ));
            continue;
        };
        match ds["type"].as_str() {
            Some("grafana-pyroscope-datasource") => check.profile_query(title, kind, t),
            Some("tempo") => check.trace_query(title, kind, t),
            other => check.problems.push(format!(
                "panel {title:?}: unexpected data source type {other:?}"
            )),
        }
    }
    check.what_the_dashboard_is_for();
    assert_no_problems(DASHBOARD, &check.problems);
}

/// What the region services emit: the only series labels, values and span names a dashboard
/// query may ask for.
struct Emitted {
    service_name: String,
    vehicles: Vec<&'static str>,
    span_names: Vec<String>,
    series_labels: [&'static str; 4],
}

impl Emitted {
    fn by(stack: &Stack) -> Emitted {
        let service_name = stack.region_service_name();
        let vehicles: Vec<&str> = rideshare::vocabulary::VEHICLES
            .iter()
            .map(|(v, _)| *v)
            .collect();
        let span_names: Vec<String> = vehicles.iter().map(|v| format!("GET /{v}")).collect();
        let series_labels = [
            PYROSCOPE_SERVICE_LABEL,
            rideshare::vocabulary::REGION_LABEL,
            rideshare::vocabulary::VEHICLE_LABEL,
            tracing_span_profiles::SPAN_NAME_LABEL,
        ];
        Emitted {
            service_name,
            vehicles,
            span_names,
            series_labels,
        }
    }

    /// `label` is a series label of the service and `value` one of its values.
    fn check_value(&self, label: &str, value: &str) -> Result<(), String> {
        let ok = if label == PYROSCOPE_SERVICE_LABEL {
            value == self.service_name
        } else if label == rideshare::vocabulary::REGION_LABEL {
            rideshare::vocabulary::REGIONS.contains(&value)
        } else if label == rideshare::vocabulary::VEHICLE_LABEL {
            self.vehicles.contains(&value)
        } else if label == tracing_span_profiles::SPAN_NAME_LABEL {
            self.span_names.iter().any(|s| s == value)
        } else {
            return Err(format!(
                "label {label:?} is not a series label of the service ({:?})",
                self.series_labels
            ));
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{label}={value:?} is a value the service never emits"
            ))
        }
    }
}

/// The dashboard's queries, one by one: what is wrong with them, and what they cover.
struct DashboardCheck {
    emitted: Emitted,
    problems: Vec<String>,
    grouped_by: BTreeSet<String>,
    flamegraph_values: BTreeMap<String, BTreeSet<String>>,
    trace_tables: usize,
}

impl DashboardCheck {
    fn new(emitted: Emitted) -> DashboardCheck {
        DashboardCheck {
            emitted,
            problems: Vec::new(),
            grouped_by: BTreeSet::new(),
            flamegraph_values: BTreeMap::new(),
            trace_tables: 0,
        }
    }

    /// A Pyroscope query: the profile type the service pushes, a query type that fits the panel,
    /// a selector and grouping by the service's series labels.
    fn profile_query(&mut self, title: &str, kind: &str, t: &Value) {
        if t["profileTypeId"] != rideshare::vocabulary::PROFILE_TYPE_ID {
            self.problems.push(format!(
                "panel {title:?}: profileTypeId {} is not {}",
                t["profileTypeId"],
                rideshare::vocabulary::PROFILE_TYPE_ID
            ));
        }
        let qt = t["queryType"].as_str().unwrap_or("");
        let fits = match kind {
            "flamegraph" => qt == "profile" || qt == "both",
            "timeseries" => qt == "metrics" || qt == "both",
            _ => matches!(qt, "metrics" | "profile" | "both"),
        };
        if !fits {
            self.problems.push(format!(
                "panel {title:?} ({kind}): queryType {qt:?} does not fit"
            ));
        }
        let selector = t["labelSelector"].as_str().unwrap_or("");
        match parse_label_selector(selector) {
            Err(e) => self.problems.push(format!("panel {title:?}: {e}")),
            Ok(matchers) => self.label_matchers(title, kind, selector, matchers),
        }
        for g in strings(t.get("groupBy")) {
            if !self.emitted.series_labels.contains(&g.as_str()) {
                self.problems.push(format!(
                    "panel {title:?}: groupBy {g:?} is not a series label of the service \
                     ({:?}; {} is per sample)",
                    self.emitted.series_labels,
                    tracing_span_profiles::SPAN_ID_LABEL
                ));
            }
            self.grouped_by.insert(g);
        }
    }

    /// A label selector selects the service, and only values the service emits.
    fn label_matchers(
        &mut self,
        title: &str,
        kind: &str,
        selector: &str,
        matchers: Vec<(String, String, String)>,
    ) {
        let service_name = &self.emitted.service_name;
        if !matchers
            .iter()
            .any(|(l, op, v)| l == PYROSCOPE_SERVICE_LABEL && op == "=" && v == service_name)
        {
            self.problems.push(format!(
                "panel {title:?}: labelSelector {selector:?} must select \
                 {PYROSCOPE_SERVICE_LABEL}=\"{service_name}\""
            ));
        }
        for (label, op, value) in matchers {
            let values: Vec<&str> = if op.ends_with('~') {
                value.split('|').collect()
            } else {
                vec![value.as_str()]
            };
            for v in values {
                if let Err(e) = self.emitted.check_value(&label, v) {
                    self.problems.push(format!("panel {title:?}: {e}"));
                }
            }
            if kind == "flamegraph" && op == "=" {
                self.flamegraph_values
                    .entry(label.clone())
                    .or_default()
                    .insert(value.clone());
            }
        }
    }

    /// A TraceQL query selects the service, and only what the service's spans carry.
    fn trace_query(&mut self, title: &str, kind: &str, t: &Value) {
        let query = t["query"].as_str().unwrap_or("");
        if kind == "table" {
            self.trace_tables += 1;
        }
        let conds = match traceql_conditions(query) {
            Ok(conds) => conds,
            Err(e) => {
                self.problems.push(format!("panel {title:?}: {e}"));
                return;
            }
        };
        let service_name = &self.emitted.service_name;
        let service_attr = format!("resource.{SERVICE_NAME_ATTRIBUTE}");
        let profile_attr = format!("span.{}", tracing_span_profiles::PROFILE_ID_ATTRIBUTE);
        if !conds
            .iter()
            .any(|(a, op, v)| *a == service_attr && op == "=" && v == service_name)
        {
            self.problems.push(format!(
                "panel {title:?}: TraceQL {query:?} must select \
                 {service_attr}=\"{service_name}\""
            ));
        }
        for (attr, op, value) in &conds {
            let ok = if *attr == service_attr {
                value == service_name
            } else if attr == "name" {
                self.emitted.span_names.contains(value)
            } else if attr == "resource.cloud.region" {
                rideshare::vocabulary::REGIONS.contains(&value.as_str())
            } else if *attr == profile_attr {
                op == "!=" && value == "nil"
            } else {
                matches!(attr.as_str(), "duration" | "kind" | "status")
            };
            if !ok {
                self.problems.push(format!(
                    "panel {title:?}: TraceQL condition `{attr} {op} {value}` asks \
                     for something the service's spans do not carry"
                ));
            }
        }
    }

    /// What the dashboard is for: CPU over time by region and vehicle, a flame graph for each,
    /// and a table of traces to open a span's profile from.
    fn what_the_dashboard_is_for(&mut self) {
        for label in [
            rideshare::vocabulary::REGION_LABEL,
            rideshare::vocabulary::VEHICLE_LABEL,
        ] {
            if !self.grouped_by.contains(label) {
                self.problems
                    .push(format!("no CPU-over-time panel grouped by {label}"));
            }
        }
        let flame_vehicles = self
            .flamegraph_values
            .get(rideshare::vocabulary::VEHICLE_LABEL)
            .cloned()
            .unwrap_or_default();
        for v in &self.emitted.vehicles {
            if !flame_vehicles.contains(*v) {
                self.problems
                    .push(format!("no flame graph for vehicle {v:?}"));
            }
        }
        let flame_regions = self
            .flamegraph_values
            .get(rideshare::vocabulary::REGION_LABEL)
            .cloned()
            .unwrap_or_default();
        for r in rideshare::vocabulary::REGIONS {
            if !flame_regions.contains(r) {
                self.problems
                    .push(format!("no flame graph for region {r:?}"));
            }
        }
        if self.trace_tables == 0 {
            self.problems
                .push("no Tempo table of traces to open a span's profile from".into());
        }
    }
}

/// No file of the stack or its docs names a removed feature toggle, in any form (a
/// `GF_FEATURE_TOGGLES_*` variable, a grafana.ini line, advice in the README).
#[test]
fn no_removed_feature_toggle_is_named() {
    let mut files = vec!["docker-compose.yml".to_owned(), "README.md".to_owned()];
    files.extend(files_under("grafana"));
    let mut problems = Vec::new();
    for file in &files {
        let text = crate::read(file);
        let words: BTreeSet<&str> = text
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .collect();
        for (toggle, release) in REMOVED_TOGGLES {
            if words.contains(toggle) {
                problems.push(format!(
                    "{file} names the feature toggle {toggle}, removed in Grafana {release} \
                     (the feature is always on)"
                ));
            }
        }
    }
    assert_no_problems("removed feature toggles", &problems);
}

/// Every file below `dir`, repository-relative.
fn files_under(dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(crate::path(dir)).unwrap_or_else(|e| panic!("{dir}: {e}"));
    for entry in entries {
        let rel = format!("{dir}/{}", entry.unwrap().file_name().to_string_lossy());
        if crate::path(&rel).is_dir() {
            out.extend(files_under(&rel));
        } else {
            out.push(rel);
        }
    }
    out
}
