//! CPU cut by region, by vehicle and by time bucket: the totals, the charts' timeline and the
//! folded stacks behind the per-region and per-vehicle flame graphs.
//!
//! The expected regions and vehicles are listed even with no CPU, so that a region that sent
//! nothing shows as zero rather than vanishing from the page.

use std::collections::BTreeMap;

use super::samples::{Buckets, Sample, sanitize_file_part};
use crate::demo::folded::Folded;
use crate::demo::report::{FlameGraph, Timeline, Totals};

pub struct ByDimension {
    /// The demo's regions, then any other a profile named.
    pub regions: Vec<String>,
    pub totals: Totals,
    pub timeline: Timeline,
    /// Per region, then per vehicle with CPU.
    pub flame_graphs: Vec<FlameGraph>,
}

pub fn by_dimension(samples: &[Sample], buckets: &Buckets) -> ByDimension {
    let regions = regions(samples);
    let mut tally = Tally::new(&regions, samples, buckets);
    for s in samples {
        tally.add(s);
    }
    let flame_graphs = flame_graphs(&regions, &tally.totals, tally.by_region, tally.by_vehicle);
    ByDimension {
        regions,
        totals: tally.totals,
        timeline: tally.timeline,
        flame_graphs,
    }
}

fn regions(samples: &[Sample]) -> Vec<String> {
    let mut regions: Vec<String> = crate::vocabulary::REGIONS
        .iter()
        .map(|r| r.to_string())
        .collect();
    for s in samples {
        if !regions.contains(&s.region) {
            regions.push(s.region.clone());
        }
    }
    regions
}

/// The running sums, filled one sample at a time.
struct Tally {
    buckets: usize,
    totals: Totals,
    timeline: Timeline,
    by_region: BTreeMap<String, Folded>,
    by_vehicle: BTreeMap<String, Folded>,
}

impl Tally {
    fn new(regions: &[String], samples: &[Sample], buckets: &Buckets) -> Self {
        let count = samples.iter().map(|s| s.bucket + 1).max().unwrap_or(0);
        let totals = Totals {
            cpu_ns: 0,
            by_region: regions.iter().map(|r| (r.clone(), 0)).collect(),
            by_vehicle: crate::vocabulary::VEHICLES
                .iter()
                .map(|(v, _)| (v.to_string(), 0))
                .collect(),
            no_vehicle_ns: 0,
        };
        let timeline = Timeline {
            start_unix_nanos: buckets.start_unix_nanos,
            bucket_nanos: buckets.width_nanos,
            by_region: totals
                .by_region
                .keys()
                .map(|r| (r.clone(), vec![0; count]))
                .collect(),
            by_vehicle: totals
                .by_vehicle
                .keys()
                .map(|v| (v.clone(), vec![0; count]))
                .collect(),
        };
        Tally {
            buckets: count,
            totals,
            timeline,
            by_region: BTreeMap::new(),
            by_vehicle: BTreeMap::new(),
        }
    }

    fn add(&mut self, s: &Sample) {
        let buckets = self.buckets;
        self.totals.cpu_ns += s.value;
        *self.totals.by_region.entry(s.region.clone()).or_default() += s.value;
        self.timeline
            .by_region
            .entry(s.region.clone())
            .or_insert_with(|| vec![0; buckets])[s.bucket] += s.value;
        add_stack(&mut self.by_region, &s.region, s);
        match &s.vehicle {
            Some(v) => {
                *self.totals.by_vehicle.entry(v.clone()).or_default() += s.value;
                self.timeline
                    .by_vehicle
                    .entry(v.clone())
                    .or_insert_with(|| vec![0; buckets])[s.bucket] += s.value;
                add_stack(&mut self.by_vehicle, v, s);
            }
            None => self.totals.no_vehicle_ns += s.value,
        }
    }
}

fn add_stack(by_key: &mut BTreeMap<String, Folded>, key: &str, s: &Sample) {
    *by_key
        .entry(key.to_owned())
        .or_default()
        .entry(s.folded.clone())
        .or_default() += s.value;
}

fn flame_graphs(
    regions: &[String],
    totals: &Totals,
    mut by_region: BTreeMap<String, Folded>,
    mut by_vehicle: BTreeMap<String, Folded>,
) -> Vec<FlameGraph> {
    let graph = |kind: &'static str, key: &str, folded: Folded| FlameGraph {
        id: format!("flame-{kind}-{}", sanitize_file_part(key)),
        kind,
        key: key.to_owned(),
        cpu_ns: folded.values().sum(),
        folded,
    };
    let mut graphs = Vec::new();
    for region in regions {
        let folded = by_region.remove(region).unwrap_or_default();
        graphs.push(graph("region", region, folded));
    }
    for (vehicle, _) in totals.by_vehicle.iter().filter(|(_, ns)| **ns > 0) {
        let folded = by_vehicle.remove(vehicle).unwrap_or_default();
        graphs.push(graph("vehicle", vehicle, folded));
    }
    graphs
}
