//! What Ollama's `/api/show` tells about a model, read from its GGUF file without
//! loading it: the metadata keys (`general.architecture`, `<arch>.context_length`,
//! `<arch>.embedding_length`, `general.license`, ...), the chat template and the
//! parameter count. Only the header is read; long arrays (the vocabulary) are skipped
//! and shown as `null`, as Ollama does.

use std::{
    io::{self, BufReader, Read},
    path::Path,
};

use serde_json::{Map, Value};

/// Arrays longer than this are shown as `null` (Ollama leaves the vocabulary out too).
const MAX_ARRAY: u64 = 16;
/// Bounds on what a header may declare, so a corrupt file cannot make us allocate.
const MAX_KEYS: u64 = 100_000;
const MAX_STRING: u64 = 16 << 20;

/// The metadata of a GGUF file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    /// Every key with a scalar, string or short array value.
    pub keys: Map<String, Value>,
    /// Weights, summed over the tensors.
    pub parameters: u64,
}

impl Metadata {
    /// A string value.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.keys.get(key).and_then(Value::as_str)
    }
}

/// Reads the metadata of the GGUF file at `path`.
pub fn read(path: &Path) -> io::Result<Metadata> {
    let mut r = Reader(BufReader::with_capacity(1 << 16, std::fs::File::open(path)?));
    let mut magic = [0u8; 4];
    r.0.read_exact(&mut magic)?;
    if &magic != b"GGUF" {
        return Err(invalid("not a GGUF file"));
    }
    let version = r.u32()?;
    if version < 2 {
        return Err(invalid("GGUF version 1 is not supported"));
    }
    let tensors = r.u64()?;
    let kv = r.u64()?;
    if kv > MAX_KEYS || tensors > MAX_KEYS {
        return Err(invalid("implausible GGUF header"));
    }
    let mut keys = Map::new();
    for _ in 0..kv {
        let key = r.string()?;
        let kind = r.u32()?;
        keys.insert(key, r.value(kind)?);
    }
    let mut parameters = 0u64;
    for _ in 0..tensors {
        r.string()?;
        let dims = r.u32()?;
        if dims > 8 {
            return Err(invalid("implausible tensor rank"));
        }
        let mut count = 1u64;
        for _ in 0..dims {
            count = count.saturating_mul(r.u64()?);
        }
        r.u32()?; // type
        r.u64()?; // offset
        parameters = parameters.saturating_add(count);
    }
    Ok(Metadata { keys, parameters })
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

struct Reader<R>(R);

impl<R: Read> Reader<R> {
    fn bytes<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let mut b = [0u8; N];
        self.0.read_exact(&mut b)?;
        Ok(b)
    }

    fn u32(&mut self) -> io::Result<u32> {
        self.bytes().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> io::Result<u64> {
        self.bytes().map(u64::from_le_bytes)
    }

    fn string(&mut self) -> io::Result<String> {
        let len = self.u64()?;
        if len > MAX_STRING {
            return Err(invalid("implausible string length"));
        }
        let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        (&mut self.0).take(len).read_to_end(&mut buf)?;
        if buf.len() as u64 != len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    /// One value of GGUF type `kind`.
    fn value(&mut self, kind: u32) -> io::Result<Value> {
        Ok(match kind {
            0 => Value::from(self.bytes::<1>()?[0]),
            1 => Value::from(i8::from_le_bytes(self.bytes()?)),
            2 => Value::from(u16::from_le_bytes(self.bytes()?)),
            3 => Value::from(i16::from_le_bytes(self.bytes()?)),
            4 => Value::from(self.u32()?),
            5 => Value::from(i32::from_le_bytes(self.bytes()?)),
            6 => Value::from(f32::from_le_bytes(self.bytes()?)),
            7 => Value::from(self.bytes::<1>()?[0] != 0),
            8 => Value::from(self.string()?),
            9 => {
                let item = self.u32()?;
                let len = self.u64()?;
                if item == 9 {
                    return Err(invalid("nested GGUF arrays are not supported"));
                }
                let mut items = Vec::new();
                for _ in 0..len {
                    let v = self.value(item)?;
                    if len <= MAX_ARRAY {
                        items.push(v);
                    }
                }
                if len <= MAX_ARRAY { Value::Array(items) } else { Value::Null }
            }
            10 => Value::from(self.u64()?),
            11 => Value::from(i64::from_le_bytes(self.bytes()?)),
            12 => Value::from(f64::from_le_bytes(self.bytes()?)),
            _ => return Err(invalid("unknown GGUF value type")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }

    #[test]
    fn reads_keys_skips_long_arrays_and_counts_parameters() {
        let mut f = b"GGUF".to_vec();
        f.extend(3u32.to_le_bytes());
        f.extend(1u64.to_le_bytes()); // tensors
        f.extend(4u64.to_le_bytes()); // keys
        string(&mut f, "general.architecture");
        f.extend(8u32.to_le_bytes());
        string(&mut f, "llama");
        string(&mut f, "llama.context_length");
        f.extend(4u32.to_le_bytes());
        f.extend(8192u32.to_le_bytes());
        string(&mut f, "tokenizer.ggml.tokens");
        f.extend(9u32.to_le_bytes());
        f.extend(8u32.to_le_bytes());
        f.extend(20u64.to_le_bytes());
        for i in 0..20 {
            string(&mut f, &format!("t{i}"));
        }
        string(&mut f, "llama.rope.scale");
        f.extend(6u32.to_le_bytes());
        f.extend(1.5f32.to_le_bytes());
        string(&mut f, "blk.0.w");
        f.extend(2u32.to_le_bytes());
        f.extend(3u64.to_le_bytes());
        f.extend(5u64.to_le_bytes());
        f.extend(0u32.to_le_bytes());
        f.extend(0u64.to_le_bytes());
        let path = std::env::temp_dir().join(format!("sluice-gguf-test-{}.gguf", std::process::id()));
        std::fs::write(&path, &f).unwrap();
        let m = read(&path).unwrap();
        std::fs::remove_file(&path).ok();
        assert_eq!(m.str("general.architecture"), Some("llama"));
        assert_eq!(m.keys["llama.context_length"], 8192);
        assert_eq!(m.keys["tokenizer.ggml.tokens"], Value::Null);
        assert_eq!(m.keys["llama.rope.scale"], 1.5);
        assert_eq!(m.parameters, 15);
        std::fs::write(&path, b"nope").unwrap();
        assert!(read(&path).is_err());
        std::fs::remove_file(&path).ok();
    }
}
