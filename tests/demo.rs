//! `rideshare demo` as a user runs it: the built binary, a short load, a report on disk. The
//! report's data (`report.json`) is recomputed here from the raw captures written beside it
//! (the pprof files and `traces.json`) with a pprof reader of this file's own, and the page is
//! opened from disk in headless Chromium, where a click on the slowest request's root span must
//! show the flame graph of that request's samples.
//!
//! One demo run serves every test of this file.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;
use pyroscope::encode::r#gen::google::Profile;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rideshare");
/// The demo's load lasts 8 s; starting, draining and stopping the regions adds some 15 s.
const DEMO_TIMEOUT: Duration = Duration::from_secs(240);

struct Demo {
    dir: PathBuf,
    stdout: String,
    report: Value,
}

/// Runs the push demo once for all tests; a failure is kept and reported by each.
fn demo() -> &'static Demo {
    static DEMO: OnceLock<Result<Demo, String>> = OnceLock::new();
    match DEMO.get_or_init(|| run_demo("pyroscope", "demo-report")) {
        Ok(demo) => demo,
        Err(e) => panic!("the demo failed: {e}"),
    }
}

/// The same demo with `--profiles otlp`, run once.
fn otlp_demo() -> &'static Demo {
    static DEMO: OnceLock<Result<Demo, String>> = OnceLock::new();
    match DEMO.get_or_init(|| run_demo("otlp", "demo-report-otlp")) {
        Ok(demo) => demo,
        Err(e) => panic!("the demo with --profiles otlp failed: {e}"),
    }
}

/// One demo at a time: two at once on a small machine would starve each other's regions, and
/// the hotspot the checks look for is a matter of CPU share.
static ONE_DEMO_AT_A_TIME: Mutex<()> = Mutex::new(());

fn run_demo(profiles: &str, dir_name: &str) -> Result<Demo, String> {
    let _one = ONE_DEMO_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(dir_name);
    let _ = std::fs::remove_dir_all(&dir);
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args(["demo", "--duration", "8s", "--profiles", profiles, "--out"])
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {BIN}: {e}"))?;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > DEMO_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("still running after {DEMO_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    eprintln!(
        "demo --profiles {profiles} took {:.1?}; stdout:\n{stdout}stderr:\n{stderr}",
        started.elapsed()
    );
    if !status.success() {
        return Err(format!("exited with {status}: {stderr}"));
    }
    let report = std::fs::read(dir.join("report.json"))
        .map_err(|e| format!("report.json: {e}"))
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| format!("report.json: {e}")))?;
    Ok(Demo {
        dir,
        stdout,
        report,
    })
}

/// One pprof sample, read by this test's own decoder.
struct Sample {
    labels: BTreeMap<String, String>,
    /// Root first.
    stack: Vec<String>,
    value: i64,
}

fn decode_pprof(path: &Path) -> Vec<Sample> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let profile = Profile::decode(bytes.as_slice())
        .unwrap_or_else(|e| panic!("{} is not pprof: {e}", path.display()));
    let string = |i: i64| -> String {
        profile
            .string_table
            .get(i as usize)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        profile
            .sample_type
            .iter()
            .map(|t| (string(t.r#type), string(t.unit)))
            .collect::<Vec<_>>(),
        [("cpu".to_owned(), "nanoseconds".to_owned())],
        "{}: a CPU profile",
        path.display()
    );
    let functions: BTreeMap<u64, String> = profile
        .function
        .iter()
        .map(|f| (f.id, string(f.name)))
        .collect();
    let locations: BTreeMap<u64, _> = profile.location.iter().map(|l| (l.id, l)).collect();
    profile
        .sample
        .iter()
        .map(|s| {
            let mut stack = Vec::new();
            // pprof: locations leaf first, inlined callees before callers.
            for id in s.location_id.iter().rev() {
                let location = locations[id];
                if location.line.is_empty() {
                    stack.push(format!("{:#x}", location.address));
                }
                for line in location.line.iter().rev() {
                    match functions.get(&line.function_id).filter(|n| !n.is_empty()) {
                        Some(name) => stack.push(name.clone()),
                        None => stack.push(format!("{:#x}", location.address)),
                    }
                }
            }
            Sample {
                labels: s
                    .label
                    .iter()
                    .filter(|l| l.str != 0)
                    .map(|l| (string(l.key), string(l.str)))
                    .collect(),
                stack,
                value: s.value[0],
            }
        })
        .collect()
}

/// The folded form `report.json` documents in its `folded_format`.
fn folded(stack: &[String]) -> String {
    if stack.is_empty() {
        return "[no stack]".to_owned();
    }
    stack
        .iter()
        .map(|f| f.replace(';', ",").replace(['\n', '\r'], " "))
        .collect::<Vec<_>>()
        .join(";")
}

/// Whether a frame is the function `name` itself (`mutex_lock<F>`, `frames::mutex_lock`), not a
/// generic argument naming it.
fn is_function(frame: &str, name: &str) -> bool {
    frame
        .split('<')
        .next()
        .unwrap_or_default()
        .split("::")
        .any(|s| s == name)
}

fn json_folded(v: &Value) -> BTreeMap<String, i64> {
    v.as_object()
        .expect("folded stacks are an object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_i64().expect("nanoseconds")))
        .collect()
}

fn add(map: &mut BTreeMap<String, i64>, key: &str, ns: i64) {
    *map.entry(key.to_owned()).or_default() += ns;
}

/// Every region's samples, from the pprof files the report lists.
fn samples_by_region(demo: &Demo) -> BTreeMap<String, Vec<Sample>> {
    let listed = demo.report["profiles"].as_array().expect("profiles");
    assert!(!listed.is_empty(), "profiles were written");
    let on_disk: BTreeSet<String> = std::fs::read_dir(demo.dir.join("profiles"))
        .unwrap()
        .map(|e| format!("profiles/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    let names: BTreeSet<String> = listed
        .iter()
        .map(|p| p["file"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(on_disk, names, "the report lists exactly the pprof files");
    let mut out: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for p in listed {
        let region = p["region"].as_str().unwrap();
        let file = p["file"].as_str().unwrap();
        assert!(file.starts_with(&format!("profiles/{region}-")), "{file}");
        assert_eq!(p["series_labels"]["region"], region);
        assert_eq!(p["series_labels"]["__name__"], "process_cpu");
        let samples = decode_pprof(&demo.dir.join(file));
        assert_eq!(
            p["cpu_ns"].as_i64(),
            Some(samples.iter().map(|s| s.value).sum::<i64>()),
            "{file}"
        );
        out.entry(region.to_owned()).or_default().extend(samples);
    }
    out
}

/// A hexadecimal address and nothing else: a frame the profiler could not name.
fn is_bare_address(frame: &str) -> bool {
    frame
        .strip_prefix("0x")
        .is_some_and(|hex| !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The service's samples name every frame: the vDSO's `clock_gettime` under `spin`, libc's
/// functions (from `.dynsym`, libc's `.symtab` being stripped), and at worst `module+0xoffset`
/// (libc's thread start, which no symbol table names), never a bare address.
#[test]
fn every_sampled_frame_has_a_name() {
    let by_region = samples_by_region(demo());
    let mut samples = 0;
    let mut bare: BTreeMap<String, i64> = BTreeMap::new();
    for s in by_region.values().flatten() {
        samples += 1;
        for frame in s.stack.iter().filter(|f| is_bare_address(f)) {
            add(&mut bare, frame, s.value);
        }
    }
    assert!(samples > 0, "the demo pushed samples");
    assert!(
        bare.is_empty(),
        "frames named by a bare address (CPU ns): {bare:?}"
    );
}

#[test]
fn the_report_is_what_the_raw_captures_say() {
    let demo = demo();
    let report = &demo.report;

    check_answers(demo);
    assert!(
        report.get("profiles_via").is_none(),
        "a push report reads as before there was a choice"
    );

    let by_region = samples_by_region(demo);
    assert!(
        ["us-east", "eu-north", "ap-south"]
            .iter()
            .all(|r| by_region.contains_key(*r)),
        "every region pushed profiles: {:?}",
        by_region.keys()
    );

    // Totals and the folded stacks per region and vehicle.
    let mut total = 0;
    let mut region_totals = BTreeMap::new();
    let mut vehicle_totals = BTreeMap::new();
    let mut region_folded: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    let mut vehicle_folded: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for (region, samples) in &by_region {
        for s in samples {
            total += s.value;
            add(&mut region_totals, region, s.value);
            let stack = folded(&s.stack);
            add(
                region_folded.entry(region.clone()).or_default(),
                &stack,
                s.value,
            );
            if let Some(v) = s.labels.get("vehicle") {
                add(&mut vehicle_totals, v, s.value);
                add(
                    vehicle_folded.entry(v.clone()).or_default(),
                    &stack,
                    s.value,
                );
            }
        }
    }
    assert_eq!(report["totals"]["cpu_ns"].as_i64(), Some(total));
    for (region, ns) in &region_totals {
        assert_eq!(
            report["totals"]["by_region"][region].as_i64(),
            Some(*ns),
            "{region}"
        );
    }
    for (vehicle, ns) in &vehicle_totals {
        assert_eq!(
            report["totals"]["by_vehicle"][vehicle].as_i64(),
            Some(*ns),
            "{vehicle}"
        );
    }
    for graph in report["flame_graphs"].as_array().unwrap() {
        let key = graph["key"].as_str().unwrap();
        let expected = match graph["kind"].as_str().unwrap() {
            "region" => region_folded.get(key),
            "vehicle" => vehicle_folded.get(key),
            other => panic!("unknown flame graph kind {other}"),
        };
        assert_eq!(
            &json_folded(&graph["folded"]),
            expected.unwrap_or(&BTreeMap::new()),
            "flame graph {key}"
        );
    }

    // The slowest traces: each flame graph holds exactly the samples of its own span.
    let index_html = std::fs::read_to_string(demo.dir.join("index.html")).unwrap();
    let traces: ExportTraceServiceRequest =
        serde_json::from_slice(&std::fs::read(demo.dir.join("traces.json")).expect("traces.json"))
            .expect("traces.json is OTLP/JSON");
    let spans: Vec<_> = traces
        .resource_spans
        .iter()
        .flat_map(|r| r.scope_spans.iter().flat_map(|s| &s.spans))
        .collect();
    assert_eq!(report["counts"]["spans"].as_u64(), Some(spans.len() as u64));
    let slowest = report["slowest_traces"].as_array().unwrap();
    assert!(slowest.len() >= 5, "{} slowest traces", slowest.len());
    let mut previous = u64::MAX;
    for trace in slowest {
        let id = trace["root_span_id"].as_str().unwrap();
        let region = trace["region"].as_str().unwrap();
        assert_eq!(id.len(), 16, "{id}");
        assert_eq!(trace["flame_id"], format!("flame-{id}"));
        assert_eq!(trace["profile_id"], id, "the root links to its own samples");

        let mut own = BTreeMap::new();
        for (r, samples) in &by_region {
            for s in samples
                .iter()
                .filter(|s| s.labels.get("span_id").map(String::as_str) == Some(id))
            {
                assert_eq!(r, region, "span {id}'s samples come from its own region");
                add(&mut own, &folded(&s.stack), s.value);
            }
        }
        assert_eq!(
            json_folded(&trace["folded"]),
            own,
            "span {id}: its flame graph holds exactly the samples labelled with its id"
        );
        assert_eq!(trace["cpu_ns"].as_i64(), Some(own.values().sum::<i64>()));
        if !own.is_empty() {
            assert!(
                index_html.contains(&format!("id=\"flame-{id}\"")),
                "the page has span {id}'s flame graph"
            );
        }

        // The same span in traces.json, the OTLP/JSON export.
        let root = spans
            .iter()
            .find(|s| hex::encode(&s.span_id) == id)
            .unwrap_or_else(|| panic!("span {id} in traces.json"));
        assert_eq!(
            hex::encode(&root.trace_id),
            trace["trace_id"].as_str().unwrap()
        );
        assert_eq!(root.name, trace["root_name"].as_str().unwrap());
        let duration = root.end_time_unix_nano - root.start_time_unix_nano;
        assert_eq!(trace["duration_ns"].as_u64(), Some(duration));
        assert!(duration <= previous, "slowest first");
        previous = duration;
        let profile_id = root
            .attributes
            .iter()
            .find(|kv| kv.key == "pyroscope.profile.id")
            .and_then(|kv| kv.value.as_ref()?.value.as_ref());
        assert_eq!(
            profile_id,
            Some(&any_value::Value::StringValue(id.to_owned())),
            "span {id} carries pyroscope.profile.id"
        );
        let waterfall = trace["spans"].as_array().unwrap();
        assert!(
            waterfall
                .iter()
                .any(|s| s["span_id"] == id && s["local_root"] == true),
            "the waterfall shows the root"
        );
        let in_trace = spans.iter().filter(|s| s.trace_id == root.trace_id).count();
        assert_eq!(
            waterfall.len() as u64 + trace["spans_omitted"].as_u64().unwrap(),
            in_trace as u64,
            "the waterfall shows the whole trace"
        );
    }
    // The diff: eu-north against us-east, mutex_lock on the eu-north side only.
    let diff = &report["diff"];
    assert_eq!(diff["baseline"], "us-east");
    assert_eq!(diff["comparison"], "eu-north");
    let (us, eu) = (&region_folded["us-east"], &region_folded["eu-north"]);
    let mut seen = BTreeSet::new();
    let (mut mutex_us, mut mutex_eu) = (0, 0);
    for line in diff["lines"].as_array().unwrap() {
        let stack = line["stack"].as_str().unwrap();
        let (b, c) = (
            line["baseline_ns"].as_i64().unwrap(),
            line["comparison_ns"].as_i64().unwrap(),
        );
        assert_eq!(b, us.get(stack).copied().unwrap_or(0), "{stack}");
        assert_eq!(c, eu.get(stack).copied().unwrap_or(0), "{stack}");
        seen.insert(stack.to_owned());
        if stack.split(';').any(|f| is_function(f, "mutex_lock")) {
            mutex_us += b;
            mutex_eu += c;
        }
    }
    let all: BTreeSet<String> = us.keys().chain(eu.keys()).cloned().collect();
    assert_eq!(seen, all, "the diff covers every stack of both regions");
    assert_eq!(mutex_us, 0, "us-east never runs mutex_lock");
    assert!(mutex_eu > 0, "eu-north burns CPU in mutex_lock");
    assert_eq!(diff["mutex_lock_baseline_ns"].as_i64(), Some(mutex_us));
    assert_eq!(diff["mutex_lock_comparison_ns"].as_i64(), Some(mutex_eu));
    assert!(
        index_html.contains("\"flame-diff\""),
        "the page has the diff"
    );

    // The answers, against the raw data.
    assert_eq!(report["summary"]["top_function"]["name"], "order_car");
    assert_eq!(report["summary"]["hotspot_region"]["region"], "eu-north");
    let functions = report["functions"].as_array().unwrap();
    assert_eq!(
        functions[0]["name"], "order_car",
        "order_car is the biggest own frame"
    );
    let order_car: i64 = by_region
        .values()
        .flatten()
        .filter(|s| s.stack.iter().any(|f| is_function(f, "order_car")))
        .map(|s| s.value)
        .sum();
    assert_eq!(functions[0]["inclusive_ns"].as_i64(), Some(order_car));
}

/// What the report must show whichever way the profiles came: the three answers on the
/// terminal, CPU in every region, eu-north's `mutex_lock` hotspot, and the slowest requests each
/// with the flame graph of its own samples, on a page that fetches nothing.
fn check_answers(demo: &Demo) {
    let report = &demo.report;
    let lines: Vec<&str> = demo.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", demo.stdout);
    let index = lines[0]
        .strip_prefix("report: ")
        .expect("the report's path");
    let page = Path::new(demo.dir.file_name().unwrap()).join("index.html");
    assert!(Path::new(index).ends_with(&page), "{index}");
    assert!(
        lines[1].starts_with("top function (inclusive CPU"),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains("order_car"), "{}", lines[1]);
    assert!(
        lines[2].starts_with("hotspot region (most CPU in mutex_lock): eu-north"),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].starts_with("slowest trace: GET /car in eu-north"),
        "{}",
        lines[3]
    );

    for region in ["us-east", "eu-north", "ap-south"] {
        assert!(
            report["totals"]["by_region"][region].as_i64() > Some(0),
            "{region} has CPU: {}",
            report["totals"]["by_region"]
        );
        assert!(
            report["profiles"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["region"] == region),
            "{region} sent profiles"
        );
    }
    assert_eq!(report["summary"]["top_function"]["name"], "order_car");
    assert_eq!(report["summary"]["hotspot_region"]["region"], "eu-north");
    assert_eq!(report["functions"][0]["name"], "order_car");
    let diff = &report["diff"];
    assert_eq!(diff["baseline"], "us-east");
    assert_eq!(diff["comparison"], "eu-north");
    assert_eq!(
        diff["mutex_lock_baseline_ns"].as_i64(),
        Some(0),
        "us-east never runs mutex_lock"
    );
    assert!(
        diff["mutex_lock_comparison_ns"].as_i64() > Some(0),
        "eu-north burns CPU in mutex_lock"
    );

    let index_html = std::fs::read_to_string(demo.dir.join("index.html")).unwrap();
    assert!(
        index_html.contains("\"flame-diff\""),
        "the page has the diff"
    );
    let slowest = report["slowest_traces"].as_array().unwrap();
    assert!(slowest.len() >= 5, "{} slowest traces", slowest.len());
    for trace in slowest {
        let id = trace["root_span_id"].as_str().unwrap();
        let folded = json_folded(&trace["folded"]);
        assert_eq!(trace["cpu_ns"].as_i64(), Some(folded.values().sum::<i64>()));
        if !folded.is_empty() {
            assert!(
                index_html.contains(&format!("id=\"flame-{id}\"")),
                "the page has span {id}'s flame graph"
            );
        }
    }
    let first = &slowest[0];
    assert_eq!(
        first["region"], "eu-north",
        "the slowest request waited for the eu-north lock"
    );
    assert_eq!(first["root_name"], "GET /car");
    assert!(
        first["cpu_ns"].as_i64().unwrap() > 0,
        "the slowest request has samples"
    );
    assert!(
        json_folded(&first["folded"])
            .keys()
            .any(|stack| stack.split(';').any(|f| is_function(f, "order_car"))),
        "the slowest request's samples are inside order_car"
    );

    // Self-contained: nothing that fetches (inferno's scripts mention URLs in comments only).
    for fetches in [
        " src=",
        "href=\"http",
        "href=\"//",
        "url(http",
        "url(//",
        "@import",
        "<link",
        "fetch(",
        "XMLHttpRequest",
    ] {
        assert!(
            !index_html.contains(fetches),
            "the page loads nothing from elsewhere, but has {fetches:?}"
        );
    }
}

#[test]
fn otlp_profiles_make_the_same_report() {
    let demo = otlp_demo();
    check_answers(demo);
    let report = &demo.report;
    assert_eq!(report["profiles_via"], "otlp");
    for p in report["profiles"].as_array().unwrap() {
        assert!(p.get("file").is_none(), "no file for an OTLP profile: {p}");
        assert!(p["series_labels"]["service.name"].is_string(), "{p}");
        assert_eq!(p["series_labels"]["region"], p["region"]);
    }
    let written = std::fs::read_dir(demo.dir.join("profiles"))
        .unwrap()
        .count();
    assert_eq!(written, 0, "no profile files beside an OTLP report");
    let index_html = std::fs::read_to_string(demo.dir.join("index.html")).unwrap();
    assert!(
        index_html.contains("the profiles as OTLP profiles"),
        "the page says how the profiles came"
    );
    // Per span, through the sample's link: the slowest request's samples are its own.
    let first = &report["slowest_traces"][0];
    assert_eq!(first["profile_id"], first["root_span_id"]);
}

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

#[test]
fn clicking_the_slowest_request_opens_its_flame_graph() {
    use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
    use headless_chrome::{Browser, LaunchOptions};

    let Some(path) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is missing: .ci/run installs Debian's chromium package"
        );
        eprintln!("skipped: no chromium at /usr/bin/chromium (apt-get install chromium)");
        return;
    };
    let demo = demo();
    let slowest = &demo.report["slowest_traces"][0];
    let span_id = slowest["root_span_id"].as_str().unwrap().to_owned();
    let trace_id = slowest["trace_id"].as_str().unwrap().to_owned();
    let url = url::Url::from_file_path(demo.dir.join("index.html").canonicalize().unwrap())
        .unwrap()
        .to_string();

    let args: Vec<&std::ffi::OsStr> = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    .iter()
    .map(std::ffi::OsStr::new)
    .collect();
    let browser = Browser::new(
        LaunchOptions::default_builder()
            .path(Some(path))
            .sandbox(false)
            .headless(true)
            .window_size(Some((1280, 1600)))
            .args(args)
            .idle_browser_timeout(Duration::from_secs(120))
            .build()
            .unwrap(),
    )
    .expect("launch chromium");
    let tab = browser.new_tab().expect("a tab");
    tab.set_default_timeout(Duration::from_secs(30));
    tab.navigate_to(&url).unwrap();
    tab.wait_until_navigated().unwrap();

    let flame = format!("flame-{span_id}");
    let state = |tab: &headless_chrome::Tab| -> String {
        let js = format!(
            r#"(() => {{
                const box = document.getElementById("{flame}");
                if (!box) return "missing";
                if (box.hidden || box.offsetHeight === 0) return "hidden";
                const frame = box.querySelector("iframe");
                const doc = frame && frame.contentDocument;
                // A document still being parsed has only the start of its graph.
                if (!doc || doc.readyState !== "complete") return "loading";
                const svg = doc.querySelector("svg");
                return svg ? "svg:" + svg.textContent : "loading";
            }})()"#
        );
        tab.evaluate(&js, false)
            .unwrap()
            .value
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    assert_eq!(state(&tab), "hidden", "no flame graph before the click");

    // The first trace card is the slowest request; its root span row is the click target.
    let first_card = tab
        .find_element(".trace")
        .unwrap()
        .get_attribute_value("id")
        .unwrap();
    assert_eq!(
        first_card.as_deref(),
        Some(format!("trace-{trace_id}").as_str())
    );
    let row = tab
        .wait_for_element(&format!(".span-row.root[data-span=\"{span_id}\"]"))
        .expect("the slowest request's root span row");
    row.click().expect("click the root span");

    let deadline = Instant::now() + Duration::from_secs(30);
    let shown = loop {
        let s = state(&tab);
        if s.starts_with("svg:") || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        shown.starts_with("svg:") && shown.contains("order_car"),
        "after the click, span {span_id}'s flame graph shows order_car: {}",
        &shown[..shown.len().min(300)]
    );
    // Its own flame graph, not another one.
    assert!(shown.contains(&span_id), "the graph names span {span_id}");

    // A picture of what the user sees: the trace and the flame graph it opened.
    tab.evaluate(
        &format!("document.getElementById('trace-{trace_id}').scrollIntoView()"),
        false,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .expect("screenshot");
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("demo-report.png");
    std::fs::write(&shot, png).unwrap();
    eprintln!("screenshot: {}", shot.display());
}
