//! The few pieces of RESP2 (the Redis protocol) the store speaks: commands as arrays of bulk
//! strings, and replies that are simple strings, errors, integers, bulk strings or a flat
//! array of those. Sizes are bounded so a misbehaving server cannot make the gateway allocate
//! without limit.

use std::io;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// Longest reply line (type byte, header, CRLF) accepted.
const MAX_LINE: usize = 4096;
/// Largest bulk string accepted (the store's replies are statuses and small numbers).
const MAX_BULK: usize = 4096;
/// Most elements in an array reply.
const MAX_ARRAY: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

/// Append one command (`*N` array of bulk strings) to `out`.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

fn protocol(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// One CRLF-terminated line without its terminator.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut line = Vec::with_capacity(32);
    let n = (&mut *r)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "redis closed the connection",
        ));
    }
    if !line.ends_with(b"\r\n") {
        return Err(protocol("reply line too long or not CRLF-terminated"));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

fn number(text: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| protocol("malformed number in reply"))
}

/// One scalar reply, or the header of an array (`Err` for a nested array).
async fn read_scalar<R: AsyncBufRead + Unpin>(r: &mut R, line: Vec<u8>) -> io::Result<Reply> {
    let (kind, rest) = line.split_first().ok_or_else(|| protocol("empty reply line"))?;
    let text = || String::from_utf8_lossy(rest).into_owned();
    match kind {
        b'+' => Ok(Reply::Status(text())),
        b'-' => Ok(Reply::Error(text())),
        b':' => Ok(Reply::Int(number(rest)?)),
        b'$' => {
            let len = number(rest)?;
            if len < 0 {
                return Ok(Reply::Bulk(None));
            }
            let len = usize::try_from(len).map_err(|_| protocol("bad bulk length"))?;
            if len > MAX_BULK {
                return Err(protocol("bulk reply too large"));
            }
            let mut data = vec![0; len + 2];
            r.read_exact(&mut data).await?;
            if !data.ends_with(b"\r\n") {
                return Err(protocol("bulk reply not CRLF-terminated"));
            }
            data.truncate(len);
            Ok(Reply::Bulk(Some(data)))
        }
        other => Err(protocol(format!("unexpected reply type byte 0x{other:02x}"))),
    }
}

/// Read one reply. Arrays may hold scalars only (nothing the store sends answers otherwise).
/// A connection closed before the first reply byte is `ConnectionAborted`: the command was
/// not answered, and a fresh connection may safely send it again.
pub async fn read<R: AsyncBufRead + Unpin>(r: &mut R) -> io::Result<Reply> {
    let line = read_line(r).await.map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => {
            io::Error::new(io::ErrorKind::ConnectionAborted, e.to_string())
        }
        _ => e,
    })?;
    if line.first() != Some(&b'*') {
        return read_scalar(r, line).await;
    }
    let len = number(line.get(1..).unwrap_or_default())?;
    if len < 0 {
        return Ok(Reply::Bulk(None));
    }
    let len = usize::try_from(len).map_err(|_| protocol("bad array length"))?;
    if len > MAX_ARRAY {
        return Err(protocol("array reply too large"));
    }
    let mut items = Vec::with_capacity(len);
    for _ in 0..len {
        let line = read_line(r).await?;
        if line.first() == Some(&b'*') {
            return Err(protocol("unexpected nested array in reply"));
        }
        items.push(read_scalar(r, line).await?);
    }
    Ok(Reply::Array(items))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> io::Result<Reply> {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async { read(&mut tokio::io::BufReader::new(bytes)).await })
    }

    #[test]
    fn encodes_commands() {
        let mut out = Vec::new();
        encode(&mut out, &[b"GET", b"k\r\n"]);
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$3\r\nk\r\n\r\n");
    }

    #[test]
    fn reads_replies() {
        assert_eq!(parse(b"+OK\r\n").unwrap(), Reply::Status("OK".into()));
        assert_eq!(
            parse(b"-NOSCRIPT No matching script\r\n").unwrap(),
            Reply::Error("NOSCRIPT No matching script".into())
        );
        assert_eq!(parse(b":-42\r\n").unwrap(), Reply::Int(-42));
        assert_eq!(parse(b"$-1\r\n").unwrap(), Reply::Bulk(None));
        assert_eq!(parse(b"$2\r\nab\r\n").unwrap(), Reply::Bulk(Some(b"ab".to_vec())));
        assert_eq!(
            parse(b"*3\r\n:1\r\n:2000\r\n$1\r\nx\r\n").unwrap(),
            Reply::Array(vec![
                Reply::Int(1),
                Reply::Int(2000),
                Reply::Bulk(Some(b"x".to_vec()))
            ])
        );
    }

    #[test]
    fn refuses_malformed_or_oversized_replies() {
        for bad in [
            &b""[..],
            b"+OK\n",
            b":12x\r\n",
            b"$5\r\nab\r\n",
            b"$999999999\r\n",
            b"*2\r\n*1\r\n:1\r\n",
            b"*99999\r\n",
            b"!3\r\nabc\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = [b"+".repeat(5000), b"\r\n".to_vec()].concat();
        assert!(parse(&long).is_err());
    }
}
