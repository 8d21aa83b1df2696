//! The live scoreboard: on a terminal a per-shard table redrawn in place, otherwise one plain
//! line per update; `--quiet` prints nothing.

use std::io::Write;

/// One shard's row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShardRow {
    pub shard: String,
    pub dispatched: u64,
    pub completed: u64,
    pub failed: u64,
    pub reassigned: u64,
    pub spillovers: u64,
    pub queue_depth: u64,
    pub nodes_healthy: usize,
    pub nodes_total: usize,
}

/// The whole board at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Board {
    pub rows: Vec<ShardRow>,
    pub finished: u64,
    pub total: u64,
    pub virtual_seconds: f64,
    /// Final jobs per wall second.
    pub throughput: f64,
}

impl Board {
    fn progress(&self) -> f64 {
        100.0 * self.finished as f64 / self.total.max(1) as f64
    }
}

/// The table of a terminal.
pub fn render_table(b: &Board) -> String {
    let mut s = format!(
        "{:<10} {:>10} {:>10} {:>8} {:>10} {:>9} {:>7} {:>7}\n",
        "shard", "dispatched", "completed", "failed", "reassigned", "spillover", "queue", "nodes"
    );
    for r in &b.rows {
        s.push_str(&format!(
            "{:<10} {:>10} {:>10} {:>8} {:>10} {:>9} {:>7} {:>7}\n",
            r.shard,
            r.dispatched,
            r.completed,
            r.failed,
            r.reassigned,
            r.spillovers,
            r.queue_depth,
            format!("{}/{}", r.nodes_healthy, r.nodes_total)
        ));
    }
    s.push_str(&format!(
        "progress {}/{} ({:.1}%)  virtual {:.1} s  {:.0} jobs/s\n",
        b.finished,
        b.total,
        b.progress(),
        b.virtual_seconds,
        b.throughput
    ));
    s
}

/// One line for logs and pipes.
pub fn render_line(b: &Board) -> String {
    let shards: Vec<String> = b
        .rows
        .iter()
        .map(|r| {
            format!(
                "{} q={} done={} fail={}",
                r.shard, r.queue_depth, r.completed, r.failed
            )
        })
        .collect();
    format!(
        "progress {}/{} ({:.1}%) virtual {:.1}s {:.0} jobs/s | {}",
        b.finished,
        b.total,
        b.progress(),
        b.virtual_seconds,
        b.throughput,
        shards.join(" | ")
    )
}

/// Writes the board to a terminal (in place) or a pipe (a line per update).
pub struct Scoreboard {
    out: Box<dyn Write + Send>,
    tty: bool,
    quiet: bool,
    drawn_lines: usize,
}

impl Scoreboard {
    /// A scoreboard on standard error (the report and summary go to standard output).
    pub fn stderr(quiet: bool) -> Self {
        use std::io::IsTerminal;
        let tty = std::io::stderr().is_terminal();
        Self::new(Box::new(std::io::stderr()), tty, quiet)
    }

    pub fn new(out: Box<dyn Write + Send>, tty: bool, quiet: bool) -> Self {
        Self {
            out,
            tty,
            quiet,
            drawn_lines: 0,
        }
    }

    /// Whether output is redrawn in place.
    pub fn is_tty(&self) -> bool {
        self.tty
    }

    /// Shows `b`.
    pub fn update(&mut self, b: &Board) {
        if self.quiet {
            return;
        }
        let text = if self.tty {
            let mut t = String::new();
            if self.drawn_lines > 0 {
                // Back to the top of the previous drawing, clearing it.
                t.push_str(&format!("\x1b[{}A\x1b[J", self.drawn_lines));
            }
            let table = render_table(b);
            self.drawn_lines = table.lines().count();
            t.push_str(&table);
            t
        } else {
            format!("{}\n", render_line(b))
        };
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> Board {
        Board {
            rows: vec![ShardRow {
                shard: "earth".into(),
                dispatched: 5,
                completed: 4,
                queue_depth: 2,
                nodes_healthy: 2,
                nodes_total: 2,
                ..Default::default()
            }],
            finished: 4,
            total: 8,
            virtual_seconds: 1.5,
            throughput: 10.0,
        }
    }

    #[test]
    fn table_and_line() {
        let t = render_table(&board());
        assert!(
            t.contains("earth") && t.contains("50.0%") && t.contains("2/2"),
            "{t}"
        );
        let l = render_line(&board());
        assert!(!l.contains('\n') && l.contains("earth q=2 done=4"), "{l}");
    }
}
