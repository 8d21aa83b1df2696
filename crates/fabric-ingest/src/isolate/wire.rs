//! The extractor's pipe protocol. After start-up the child writes [`HELLO`]; then, per file,
//! the parent writes a request frame (`u32` LE header length, the JSON [`ExtractRequest`]
//! header, `u64` LE body length, the file's bytes) and the child answers with one response
//! frame (`u64` LE length, the JSON of `Result<NewDocument, ExtractError>`).

use std::io::{self, Read, Write};

use fabric_core::doc::{DocType, NewDocument};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::ExtractError;
use crate::{FileMeta, Limits};

/// The child's first 8 bytes: it is an extractor of this protocol version, and its caps are
/// in force.
pub const HELLO: &[u8; 8] = b"FABX0001";

/// Largest request header accepted (the JSON without the file's bytes).
const MAX_HEADER_BYTES: u32 = 1 << 20;

/// One file to parse in the child.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtractRequest {
    pub doc_type: DocType,
    pub source: String,
    /// Path relative to the source root (`/`-separated): names the document.
    pub path: String,
    pub meta: FileMeta,
    pub limits: Limits,
    /// The file's content (sent as the frame's body, not in the JSON).
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

/// What the child answers.
pub type Response = Result<NewDocument, ExtractError>;

fn bad(m: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, m.into())
}

/// Reads a request in the child; `None` at a clean end of input (the pool closed the pipe).
pub fn read_request(r: &mut impl Read, max_body: u64) -> io::Result<Option<ExtractRequest>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        r => r?,
    }
    let len = u32::from_le_bytes(len);
    if len > MAX_HEADER_BYTES {
        return Err(bad(format!("request header of {len} bytes")));
    }
    let mut header = vec![0; len as usize];
    r.read_exact(&mut header)?;
    let mut req: ExtractRequest =
        serde_json::from_slice(&header).map_err(|e| bad(format!("request header: {e}")))?;
    let mut blen = [0u8; 8];
    r.read_exact(&mut blen)?;
    let blen = u64::from_le_bytes(blen);
    if blen > max_body {
        return Err(bad(format!("request body of {blen} bytes")));
    }
    req.bytes = vec![0; blen as usize];
    r.read_exact(&mut req.bytes)?;
    Ok(Some(req))
}

/// Writes a response frame in the child.
pub fn write_response(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    w.write_all(&(body.len() as u64).to_le_bytes())?;
    w.write_all(body)?;
    w.flush()
}

/// Writes a request frame in the parent.
pub async fn send_request(
    w: &mut (impl tokio::io::AsyncWrite + Unpin),
    req: &ExtractRequest,
) -> io::Result<()> {
    let header = serde_json::to_vec(req).map_err(|e| bad(e.to_string()))?;
    let mut frame = Vec::with_capacity(header.len() + 12);
    frame.extend_from_slice(&(header.len() as u32).to_le_bytes());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(&(req.bytes.len() as u64).to_le_bytes());
    w.write_all(&frame).await?;
    w.write_all(&req.bytes).await?;
    w.flush().await
}

/// How reading a response ended, short of an I/O error.
pub enum Frame {
    Body(Vec<u8>),
    /// The child announced a frame over the cap (it is not read).
    OverCap(u64),
}

/// Reads a response frame in the parent, refusing one over `cap` bytes unread.
pub async fn read_response(
    r: &mut (impl tokio::io::AsyncRead + Unpin),
    cap: u64,
) -> io::Result<Frame> {
    let len = r.read_u64_le().await?;
    if len > cap {
        return Ok(Frame::OverCap(len));
    }
    let mut body = vec![0; len as usize];
    r.read_exact(&mut body).await?;
    Ok(Frame::Body(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_with_their_bytes() {
        let req = ExtractRequest {
            doc_type: DocType::Pdf,
            source: "s".into(),
            path: "a/b.pdf".into(),
            meta: FileMeta {
                size: 3,
                mtime_ms: 7,
                hash: "h".into(),
            },
            limits: Limits::default(),
            bytes: b"%PDF".to_vec(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let mut buf = Vec::new();
        rt.block_on(send_request(&mut buf, &req)).expect("send");
        let got = read_request(&mut buf.as_slice(), 1 << 20)
            .expect("read")
            .expect("a request");
        assert_eq!(got, req);
        assert!(read_request(&mut &buf[..0], 1 << 20)
            .expect("eof")
            .is_none());
        assert!(
            read_request(&mut buf.as_slice(), 2).is_err(),
            "body over the cap"
        );
    }
}
