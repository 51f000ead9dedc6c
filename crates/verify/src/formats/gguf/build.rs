//! Byte builders for tests (here and in the integration tests).

/// A GGUF file under construction.
#[derive(Default)]
pub struct GgufBuilder {
    pub version: u32,
    pub kv: Vec<(String, u32, Vec<u8>)>,
    pub tensors: Vec<(String, Vec<u64>, u32, u64)>,
    pub alignment: u64,
    pub data: Vec<u8>,
    /// Override the counts written in the header.
    pub tensor_count: Option<u64>,
    pub kv_count: Option<u64>,
}

pub fn str_bytes(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

impl GgufBuilder {
    pub fn new() -> Self {
        GgufBuilder {
            version: 3,
            alignment: 32,
            ..Default::default()
        }
    }
    pub fn kv_raw(mut self, key: &str, ty: u32, value: Vec<u8>) -> Self {
        self.kv.push((key.to_string(), ty, value));
        self
    }
    pub fn kv_str(self, key: &str, v: &str) -> Self {
        self.kv_raw(key, 8, str_bytes(v.as_bytes()))
    }
    pub fn kv_u32(self, key: &str, v: u32) -> Self {
        self.kv_raw(key, 4, v.to_le_bytes().to_vec())
    }
    /// A tensor whose data is appended (zeroes) in order, aligned.
    pub fn tensor(mut self, name: &str, dims: &[u64], ty: u32, size: u64) -> Self {
        let off = self.data.len() as u64;
        self.tensors
            .push((name.to_string(), dims.to_vec(), ty, off));
        self.data.resize((off + size) as usize, 0);
        let aligned = (self.data.len() as u64).div_ceil(self.alignment) * self.alignment;
        self.data.resize(aligned as usize, 0);
        self
    }
    pub fn header_bytes(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend(
            self.tensor_count
                .unwrap_or(self.tensors.len() as u64)
                .to_le_bytes(),
        );
        out.extend(self.kv_count.unwrap_or(self.kv.len() as u64).to_le_bytes());
        for (k, t, v) in &self.kv {
            out.extend(str_bytes(k.as_bytes()));
            out.extend(t.to_le_bytes());
            out.extend(v);
        }
        for (name, dims, ty, off) in &self.tensors {
            out.extend(str_bytes(name.as_bytes()));
            out.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(ty.to_le_bytes());
            out.extend(off.to_le_bytes());
        }
        out
    }
    pub fn build(&self) -> Vec<u8> {
        let mut out = self.header_bytes();
        let aligned = (out.len() as u64).div_ceil(self.alignment) * self.alignment;
        out.resize(aligned as usize, 0);
        out.extend(&self.data);
        out
    }
}
