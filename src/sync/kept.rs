//! The customers' results a CLI run prints when it ends, kept in an anonymous
//! temporary file instead of memory: at 50,000 customers the results are tens of
//! megabytes, and the run itself needs none of them once they are stored.
//!
//! Each result is appended as one JSON document as the customer finishes; an index
//! of (Sophos order, offset, length) reads them back in Sophos order.

use crate::sync::report::CustomerReport;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};

pub struct KeptCustomers {
    file: BufWriter<std::fs::File>,
    /// (the customer's place in the Sophos tenant list, offset, length)
    index: Vec<(u32, u64, u32)>,
    written: u64,
    /// Results that could not be kept (the temporary file failed): they are in
    /// the store (a real run), not in what is printed.
    lost: u64,
}

impl KeptCustomers {
    /// An anonymous file in the system's temporary directory (`TMPDIR`), gone
    /// when the process ends, however it ends.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            file: BufWriter::new(tempfile::tempfile()?),
            index: Vec::new(),
            written: 0,
            lost: 0,
        })
    }

    /// Appends `c`, the customer at `place` in the tenant list. A failed write is
    /// counted in [`lost`](Self::lost), never an error of the run: the result is
    /// stored (or, in a dry run, only this printout misses it).
    pub fn keep(&mut self, place: usize, c: &CustomerReport) {
        let kept = serde_json::to_vec(c)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                self.file.write_all(&bytes)?;
                Ok(bytes.len())
            });
        match kept {
            Ok(len) => {
                self.index.push((place as u32, self.written, len as u32));
                self.written += len as u64;
            }
            Err(e) => {
                if self.lost == 0 {
                    tracing::warn!(error = %e, "a customer's result could not be kept for the printout");
                }
                self.lost += 1;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Results that could not be kept.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Hands every kept result to `each`, in Sophos order, one at a time.
    pub fn for_each(
        &mut self,
        mut each: impl FnMut(CustomerReport) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        self.file.flush()?;
        self.index.sort_unstable_by_key(|(place, ..)| *place);
        let file = self.file.get_mut();
        let mut buffer = Vec::new();
        for &(_, offset, len) in &self.index {
            buffer.resize(len as usize, 0);
            file.seek(SeekFrom::Start(offset))?;
            file.read_exact(&mut buffer)?;
            let c = serde_json::from_slice(&buffer).map_err(std::io::Error::other)?;
            each(c)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer(id: &str) -> CustomerReport {
        serde_json::from_value(serde_json::json!({
            "tenantId": id, "tenantName": format!("Tenant {id}"), "status": "synced",
            "products": [], "errors": []
        }))
        .expect("a customer report")
    }

    #[test]
    fn results_kept_in_any_order_come_back_in_sophos_order_whole() {
        let mut kept = KeptCustomers::new().unwrap();
        for (place, id) in [(2, "c"), (0, "a"), (3, "d"), (1, "b")] {
            kept.keep(place, &customer(id));
        }
        assert_eq!(kept.len(), 4);
        let mut back = Vec::new();
        kept.for_each(|c| {
            back.push(c);
            Ok(())
        })
        .unwrap();
        let ids: Vec<&str> = back.iter().map(|c| c.tenant_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c", "d"]);
        assert_eq!(back[2], customer("c"));
        assert_eq!(kept.lost(), 0);
    }
}
