//! What a run produces: one [`Row`] per combination, the terminal table, the JSON lines,
//! the SVG plot (throughput against p99 latency) and `BENCHMARKS.md`.
//!
//! The plot is hand-built SVG (a few lines of `<polyline>` and `<text>`), not plotters:
//! it needs no font files or extra dependencies, and the same input gives byte-identical
//! output, so a regenerated BENCHMARKS.md diffs cleanly.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::floors::Floor;

/// One measured combination, or the Redis ceiling of one load.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// `result` (the cluster) or `ceiling` (one unreplicated redis-server).
    pub kind: String,
    /// Where the replicas ran: `process` (three `paxos-node serve` processes) or
    /// `in-process` (three servers inside the harness); empty for a ceiling.
    pub cluster: String,
    /// `tcp` or `quic`; `redis` for a ceiling.
    pub transport: String,
    /// `memory` or `file`; empty for a ceiling.
    pub storage: String,
    /// `tokio` or `smol`; empty for a ceiling.
    pub runtime: String,
    /// Threads of each replica's runtime; 0 for a ceiling.
    pub threads: usize,
    /// `set`, `get`, `mixR`.
    pub workload: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Commands per round trip.
    pub pipeline: usize,
    /// Bytes per `SET` value.
    pub value_bytes: usize,
    /// The measured window, seconds.
    pub seconds: f64,
    /// Commands answered in the window.
    pub ops: u64,
    /// Error replies among them.
    pub errors: u64,
    /// The first error reply, if any.
    pub first_error: Option<String>,
    /// Commands per second.
    pub ops_per_sec: f64,
    /// Latency percentiles, microseconds.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// CPU time per command, microseconds: of the three replica processes together, or
    /// in-process of the whole harness process (clients included).
    pub cpu_us_per_op: Option<f64>,
    /// CPU time of the leader's process per command, microseconds (process clusters only).
    pub leader_cpu_us_per_op: Option<f64>,
    /// The leader's CPU time over the wall time of the run, in cores: 1.0 is one core
    /// fully busy, which is the ceiling of a one-threaded (`tokio:1`) leader.
    pub leader_busy: Option<f64>,
    /// CPU time of the harness process per command, microseconds: the clients' cost,
    /// measured when the replicas are processes of their own (and for Redis).
    pub clients_cpu_us_per_op: Option<f64>,
    /// Commands per committed slot on the leader (client commands applied / slots
    /// applied, over the window): the batch size.
    pub batch: Option<f64>,
    /// `Storage::persist` calls per second, summed over the replicas.
    pub persists_per_sec: Option<f64>,
    /// Reads the leader answered under its lease in the window.
    pub lease_reads: Option<f64>,
    /// The floor the latency is compared with, microseconds.
    pub floor_us: Option<f64>,
    /// What that floor is (`2 x tcp_rtt + fdatasync`, `ping`).
    pub floor: String,
    /// p50 / floor.
    pub p50_x_floor: Option<f64>,
    /// p99 / floor.
    pub p99_x_floor: Option<f64>,
    /// Redis's ops/s under the same load.
    pub ceiling_ops_per_sec: Option<f64>,
    /// ops/s / Redis's ops/s.
    pub ops_x_ceiling: Option<f64>,
}

impl Row {
    /// The cluster's name: `transport/storage/runtime:threads`, then ` in-process` if it ran in
    /// the harness (the same as [`ClusterKind`](crate::cluster::ClusterKind)'s display).
    fn cluster_name(&self) -> String {
        let mut name = format!(
            "{}/{}/{}:{}",
            self.transport, self.storage, self.runtime, self.threads
        );
        if self.cluster == crate::cluster::IN_PROCESS {
            name.push_str(" in-process");
        }
        name
    }

    /// The series a row belongs to in the plot: everything but the client count.
    fn series(&self) -> String {
        let mut name = if self.kind == "ceiling" {
            "redis (ceiling)".to_owned()
        } else {
            self.cluster_name()
        };
        write!(name, " {}", self.workload).expect("writing to a String");
        if self.pipeline > 1 {
            write!(name, " P{}", self.pipeline).expect("writing to a String");
        }
        name
    }
}

/// The JSON line of a floor: the floor's fields with `"kind": "floor"`.
pub fn floor_json(floor: &Floor) -> String {
    let mut value = serde_json::to_value(floor).expect("a floor serialises");
    value["kind"] = "floor".into();
    value.to_string()
}

/// The JSON line of a row.
pub fn row_json(row: &Row) -> String {
    serde_json::to_string(row).expect("a row serialises")
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
}

fn ratio(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}x"))
}

const HEADERS: [&str; 16] = [
    "cluster",
    "load",
    "clients",
    "ops/s",
    "x redis",
    "p50 us",
    "x floor",
    "p99 us",
    "p99.9 us",
    "floor",
    "cpu us/op",
    "leader us/op",
    "leader busy",
    "clients us/op",
    "batch",
    "persists/s",
];

fn cells(row: &Row) -> [String; 16] {
    let cluster = if row.kind == "ceiling" {
        "redis-server".to_owned()
    } else {
        row.cluster_name()
    };
    let load = if row.pipeline > 1 {
        format!("{} P{}", row.workload, row.pipeline)
    } else {
        row.workload.clone()
    };
    [
        cluster,
        load,
        row.clients.to_string(),
        format!("{:.0}", row.ops_per_sec),
        row.ops_x_ceiling
            .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}x")),
        format!("{:.0}", row.p50_us),
        ratio(row.p50_x_floor),
        format!("{:.0}", row.p99_us),
        format!("{:.0}", row.p999_us),
        row.floor_us
            .map_or_else(|| "-".to_owned(), |f| format!("{f:.0} us {}", row.floor)),
        opt(row.cpu_us_per_op, 1),
        opt(row.leader_cpu_us_per_op, 1),
        opt(row.leader_busy, 2),
        opt(row.clients_cpu_us_per_op, 1),
        opt(row.batch, 1),
        opt(row.persists_per_sec, 0),
    ]
}

/// The terminal table: floors, then every row.
pub fn table(floors: &[Floor], rows: &[Row]) -> String {
    let mut out = String::new();
    for f in floors {
        let at = if f.cluster.is_empty() {
            String::new()
        } else {
            format!(" ({})", f.cluster)
        };
        writeln!(
            out,
            "floor {}{at}: p50 {:.1} us, p99 {:.1} us ({} samples)",
            f.name, f.p50_us, f.p99_us, f.samples
        )
        .expect("writing to a String");
    }
    let all: Vec<[String; 16]> = rows.iter().map(cells).collect();
    let mut widths = HEADERS.map(str::len);
    for r in &all {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: &[String]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i < 2 {
                write!(l, "{c:<w$}  ").expect("writing to a String");
            } else {
                write!(l, "{c:>w$}  ").expect("writing to a String");
            }
        }
        l.trim_end().to_owned()
    };
    writeln!(out, "{}", line(&HEADERS.map(str::to_owned))).expect("writing to a String");
    for r in &all {
        writeln!(out, "{}", line(r)).expect("writing to a String");
    }
    out
}

/// The markdown tables: floors, then every row.
pub fn markdown_tables(floors: &[Floor], rows: &[Row]) -> String {
    let mut out = String::from(
        "| floor | measured on | p50 us | p99 us | samples |\n|---|---|---:|---:|---:|\n",
    );
    for f in floors {
        let on = match (f.name.as_str(), f.cluster.as_str()) {
            ("fdatasync", _) => "the run directory, beside the cluster data",
            (_, "") => "two processes on loopback",
            (_, cluster) => cluster,
        };
        writeln!(
            out,
            "| {} | {on} | {:.1} | {:.1} | {} |",
            f.name, f.p50_us, f.p99_us, f.samples
        )
        .expect("writing to a String");
    }
    out.push('\n');
    out.push_str(&format!("| {} |\n", HEADERS.join(" | ")));
    out.push_str(&format!(
        "|{}\n",
        HEADERS
            .iter()
            .enumerate()
            .map(|(i, _)| if i < 2 { "---|" } else { "---:|" })
            .collect::<String>()
    ));
    for r in rows {
        out.push_str(&format!("| {} |\n", cells(r).join(" | ")));
    }
    out
}

const COLOURS: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f",
];

/// The plot: ops/s (linear) against p99 latency (log scale), one line per series through
/// its client counts, each point labelled with its client count.
pub fn svg(rows: &[Row], title: &str) -> String {
    let (width, height) = (960.0, 600.0);
    let (left, right, top, bottom) = (80.0, 300.0, 50.0, 60.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let mut series: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.ops > 0) {
        series.entry(r.series()).or_default().push(r);
    }
    let lat = |r: &Row| r.p99_us.max(1.0);
    let min_lat = rows.iter().map(lat).fold(f64::INFINITY, f64::min);
    let max_lat = rows.iter().map(lat).fold(1.0, f64::max);
    let (lo, hi) = if min_lat.is_finite() {
        (
            min_lat.log10().floor(),
            max_lat.log10().ceil().max(min_lat.log10().floor() + 1.0),
        )
    } else {
        (1.0, 4.0)
    };
    let max_ops = rows.iter().map(|r| r.ops_per_sec).fold(1.0, f64::max) * 1.1;
    let x = |us: f64| left + (us.max(1.0).log10() - lo) / (hi - lo) * plot_w;
    let y = |ops: f64| top + plot_h - ops / max_ops * plot_h;
    let mut s = String::new();
    let w = &mut s;
    let put = |w: &mut String, text: String| w.push_str(&text);
    put(
        w,
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n"
        ),
    );
    put(
        w,
        format!("<rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>\n"),
    );
    put(
        w,
        format!(
            "<text x=\"{}\" y=\"28\" font-size=\"16\" text-anchor=\"middle\">{}</text>\n",
            left + plot_w / 2.0,
            escape(title)
        ),
    );
    // Axes and grid: decades on x, tenths of the range on y.
    for d in lo as i32..=hi as i32 {
        let us = 10f64.powi(d);
        let px = x(us);
        put(
            w,
            format!(
                "<line x1=\"{px:.1}\" y1=\"{top}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\n<text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
                top + plot_h,
                top + plot_h + 18.0,
                human_us(us)
            ),
        );
    }
    for i in 0..=10 {
        let ops = max_ops * f64::from(i) / 10.0;
        let py = y(ops);
        put(
            w,
            format!(
                "<line x1=\"{left}\" y1=\"{py:.1}\" x2=\"{:.1}\" y2=\"{py:.1}\" stroke=\"#eee\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
                left + plot_w,
                left - 6.0,
                py + 4.0,
                human_ops(ops)
            ),
        );
    }
    put(
        w,
        format!(
            "<rect x=\"{left}\" y=\"{top}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"black\"/>\n"
        ),
    );
    put(
        w,
        format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">p99 latency (log scale)</text>\n",
            left + plot_w / 2.0,
            height - 18.0
        ),
    );
    put(
        w,
        format!(
            "<text x=\"18\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {:.1})\">ops/s</text>\n",
            top + plot_h / 2.0,
            top + plot_h / 2.0
        ),
    );
    for (i, (name, points)) in series.iter_mut().enumerate() {
        points.sort_by_key(|r| r.clients);
        let colour = COLOURS[i % COLOURS.len()];
        let dash = if name.starts_with("redis") {
            " stroke-dasharray=\"5,4\""
        } else {
            ""
        };
        let path: Vec<String> = points
            .iter()
            .map(|r| format!("{:.1},{:.1}", x(lat(r)), y(r.ops_per_sec)))
            .collect();
        put(
            w,
            format!(
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/>\n",
                path.join(" ")
            ),
        );
        for r in points.iter() {
            let (px, py) = (x(lat(r)), y(r.ops_per_sec));
            put(
                w,
                format!(
                    "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"3.5\" fill=\"{colour}\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"{colour}\">{}</text>\n",
                    px + 5.0,
                    py - 5.0,
                    r.clients
                ),
            );
        }
        let ly = top + 10.0 + 18.0 * i as f64;
        let lx = left + plot_w + 16.0;
        put(
            w,
            format!(
                "<line x1=\"{lx:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/>\n<text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
                lx + 22.0,
                lx + 28.0,
                ly + 4.0,
                escape(name)
            ),
        );
    }
    let note_y = top + 10.0 + 18.0 * series.len() as f64 + 10.0;
    put(
        w,
        format!(
            "<text x=\"{:.1}\" y=\"{note_y:.1}\" font-size=\"10\" fill=\"#666\">point labels: clients</text>\n",
            left + plot_w + 16.0
        ),
    );
    s.push_str("</svg>\n");
    s
}

fn human_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.0} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.0} ms", us / 1e3)
    } else {
        format!("{us:.0} us")
    }
}

fn human_ops(ops: f64) -> String {
    if ops >= 1e6 {
        format!("{:.1}M", ops / 1e6)
    } else if ops >= 1e3 {
        format!("{:.0}k", ops / 1e3)
    } else {
        format!("{ops:.0}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(clients: usize, ops: f64, p99: f64) -> Row {
        Row {
            kind: "result".into(),
            cluster: "process".into(),
            transport: "tcp".into(),
            storage: "memory".into(),
            runtime: "tokio".into(),
            threads: 1,
            workload: "set".into(),
            clients,
            pipeline: 1,
            value_bytes: 64,
            seconds: 1.0,
            ops: ops as u64,
            errors: 0,
            first_error: None,
            ops_per_sec: ops,
            p50_us: p99 / 2.0,
            p99_us: p99,
            p999_us: p99 * 2.0,
            cpu_us_per_op: Some(10.0),
            leader_cpu_us_per_op: Some(6.0),
            leader_busy: Some(0.8),
            clients_cpu_us_per_op: Some(5.0),
            batch: Some(1.0),
            persists_per_sec: Some(100.0),
            lease_reads: None,
            floor_us: Some(50.0),
            floor: "2 x tcp_rtt".into(),
            p50_x_floor: Some(p99 / 100.0),
            p99_x_floor: Some(p99 / 50.0),
            ceiling_ops_per_sec: None,
            ops_x_ceiling: None,
        }
    }

    #[test]
    fn the_plot_has_one_line_per_series_and_a_point_per_row() {
        let rows = [row(1, 1000.0, 300.0), row(16, 9000.0, 3000.0)];
        let svg = svg(&rows, "t");
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("tcp/memory/tokio:1 set"));
    }

    #[test]
    fn the_table_lines_up_and_the_json_parses() {
        let rows = [row(1, 1000.0, 300.0)];
        let t = table(&[], &rows);
        assert_eq!(t.lines().count(), 2);
        let v: serde_json::Value = serde_json::from_str(&row_json(&rows[0])).unwrap();
        assert_eq!(v["ops_per_sec"], 1000.0);
    }
}
