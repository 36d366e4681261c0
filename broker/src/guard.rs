//! Pre-decode guard for request bodies.
//!
//! `kafka-protocol` 0.18 pre-allocates every array by its declared count (`Vec::with_capacity`), so
//! a 20-byte request claiming 2^31 topics would make the decoder allocate gigabytes. Before a body
//! reaches the decoder, this walks it along the request's schema (for the versions we serve) without
//! allocating: every array element must really be there. After a successful walk the decoder's
//! allocations are bounded by a small multiple of the frame size.

use kafka_protocol::messages::ApiKey;

/// One field of a schema.
#[derive(Debug, Clone)]
enum F {
    I8,
    I16,
    I32,
    I64,
    Uuid,
    Bool,
    /// String (non-null).
    Str,
    /// Nullable string.
    NStr,
    /// Nullable bytes / records.
    NBytes,
    /// Array of structs (nullable allowed when the flag is set).
    Arr(Vec<F>, bool),
    /// Array of int32.
    ArrI32,
    /// Array of strings (no per-element tags).
    ArrStr,
    /// Nullable array of strings.
    NArrStr,
}

struct Walker<'a> {
    buf: &'a [u8],
    pos: usize,
    flexible: bool,
}

impl Walker<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.buf.len() - self.pos < n {
            return Err(format!("truncated at byte {} (need {n} more)", self.pos));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn uvarint(&mut self) -> Result<u32, String> {
        let mut v: u32 = 0;
        for i in 0..5 {
            let b = self.take(1)?[0];
            v |= ((b & 0x7f) as u32) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn i16(&mut self) -> Result<i16, String> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, String> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Length of a (nullable) string/bytes: `None` = null.
    fn len_prefix(&mut self, wide: bool) -> Result<Option<usize>, String> {
        if self.flexible {
            let n = self.uvarint()?;
            Ok(n.checked_sub(1).map(|n| n as usize))
        } else {
            let n = if wide { self.i32()? } else { self.i16()? as i32 };
            if n < -1 {
                return Err(format!("negative length {n}"));
            }
            Ok(usize::try_from(n).ok())
        }
    }

    fn array_len(&mut self, nullable: bool) -> Result<usize, String> {
        let n = if self.flexible {
            self.uvarint()?.checked_sub(1).map(|n| n as usize)
        } else {
            let n = self.i32()?;
            if n < -1 {
                return Err(format!("negative array length {n}"));
            }
            usize::try_from(n).ok()
        };
        match n {
            Some(n) if n > self.buf.len() - self.pos => {
                Err(format!("array of {n} elements in {} bytes", self.buf.len() - self.pos))
            }
            Some(n) => Ok(n),
            None if nullable => Ok(0),
            None => Err("null array where none is allowed".into()),
        }
    }

    fn tags(&mut self) -> Result<(), String> {
        if !self.flexible {
            return Ok(());
        }
        let n = self.uvarint()?;
        for _ in 0..n {
            self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.take(size)?;
        }
        Ok(())
    }

    fn walk(&mut self, fields: &[F]) -> Result<(), String> {
        for f in fields {
            match f {
                F::I8 | F::Bool => {
                    self.take(1)?;
                }
                F::I16 => {
                    self.take(2)?;
                }
                F::I32 => {
                    self.take(4)?;
                }
                F::I64 => {
                    self.take(8)?;
                }
                F::Uuid => {
                    self.take(16)?;
                }
                F::Str | F::NStr => match self.len_prefix(false)? {
                    Some(n) => {
                        self.take(n)?;
                    }
                    None if matches!(f, F::NStr) => {}
                    None => return Err("null string where none is allowed".into()),
                },
                F::NBytes => {
                    if let Some(n) = self.len_prefix(true)? {
                        self.take(n)?;
                    }
                }
                F::ArrI32 => {
                    let n = self.array_len(false)?;
                    self.take(n.checked_mul(4).ok_or("array too long")?)?;
                }
                F::ArrStr | F::NArrStr => {
                    let n = self.array_len(matches!(f, F::NArrStr))?;
                    for _ in 0..n {
                        self.walk(&[F::Str])?;
                    }
                }
                F::Arr(inner, nullable) => {
                    let n = self.array_len(*nullable)?;
                    for _ in 0..n {
                        self.walk(inner)?;
                        self.tags()?;
                    }
                }
            }
        }
        Ok(())
    }
}

fn when(cond: bool, f: F) -> Option<F> {
    cond.then_some(f)
}

fn schema(api: ApiKey, v: i16) -> Option<(Vec<F>, bool)> {
    use F::*;
    let s = |fields: Vec<Option<F>>| fields.into_iter().flatten().collect::<Vec<F>>();
    let out = match api {
        ApiKey::Produce => (
            s(vec![
                when(v >= 3, NStr),
                Some(I16),
                Some(I32),
                Some(Arr(vec![Str, Arr(vec![I32, NBytes], false)], false)),
            ]),
            v >= 9,
        ),
        ApiKey::Metadata => (
            s(vec![
                Some(Arr(
                    s(vec![when(v >= 10, Uuid), Some(if v >= 10 { NStr } else { Str })]),
                    v >= 1,
                )),
                when(v >= 4, Bool),
                when((8..=10).contains(&v), Bool),
                when(v >= 8, Bool),
            ]),
            v >= 9,
        ),
        ApiKey::Fetch => (
            s(vec![
                when(v <= 14, I32),
                Some(I32),
                Some(I32),
                when(v >= 3, I32),
                when(v >= 4, I8),
                when(v >= 7, I32),
                when(v >= 7, I32),
                Some(Arr(
                    vec![
                        if v >= 13 { Uuid } else { Str },
                        Arr(
                            s(vec![
                                Some(I32),
                                when(v >= 9, I32),
                                Some(I64),
                                when(v >= 12, I32),
                                when(v >= 5, I64),
                                Some(I32),
                            ]),
                            false,
                        ),
                    ],
                    false,
                )),
                when(v >= 7, Arr(vec![if v >= 13 { Uuid } else { Str }, ArrI32], false)),
                when(v >= 11, Str),
            ]),
            v >= 12,
        ),
        ApiKey::ListOffsets => (
            s(vec![
                Some(I32),
                when(v >= 2, I8),
                Some(Arr(
                    vec![
                        Str,
                        Arr(
                            s(vec![Some(I32), when(v >= 4, I32), Some(I64), when(v == 0, I32)]),
                            false,
                        ),
                    ],
                    false,
                )),
                when(v >= 10, I32),
            ]),
            v >= 6,
        ),
        ApiKey::CreateTopics => (
            s(vec![
                Some(Arr(
                    vec![Str, I32, I16, Arr(vec![I32, ArrI32], false), Arr(vec![Str, NStr], false)],
                    false,
                )),
                Some(I32),
                when(v >= 1, Bool),
            ]),
            v >= 5,
        ),
        ApiKey::DeleteTopics => (
            s(vec![Some(if v >= 6 { Arr(vec![NStr, Uuid], false) } else { ArrStr }), Some(I32)]),
            v >= 4,
        ),
        ApiKey::FindCoordinator => {
            (s(vec![when(v <= 3, Str), when(v >= 1, I8), when(v >= 4, ArrStr)]), v >= 3)
        }
        ApiKey::InitProducerId => {
            (s(vec![Some(NStr), Some(I32), when(v >= 3, I64), when(v >= 3, I16)]), v >= 2)
        }
        // The classic group APIs (OffsetCommit v0-1 are parsed by hand with their own bounds).
        ApiKey::JoinGroup => (
            s(vec![
                Some(Str),
                Some(I32),
                when(v >= 1, I32),
                Some(Str),
                when(v >= 5, NStr),
                Some(Str),
                Some(Arr(vec![Str, NBytes], false)),
                when(v >= 8, NStr),
            ]),
            v >= 6,
        ),
        ApiKey::SyncGroup => (
            s(vec![
                Some(Str),
                Some(I32),
                Some(Str),
                when(v >= 3, NStr),
                when(v >= 5, NStr),
                when(v >= 5, NStr),
                Some(Arr(vec![Str, NBytes], false)),
            ]),
            v >= 4,
        ),
        ApiKey::Heartbeat => (s(vec![Some(Str), Some(I32), Some(Str), when(v >= 3, NStr)]), v >= 4),
        ApiKey::LeaveGroup => (
            s(vec![
                Some(Str),
                when(v <= 2, Str),
                when(v >= 3, Arr(s(vec![Some(Str), Some(NStr), when(v >= 5, NStr)]), false)),
            ]),
            v >= 4,
        ),
        ApiKey::OffsetCommit if v >= 2 => (
            s(vec![
                Some(Str),
                Some(I32),
                Some(Str),
                when(v >= 7, NStr),
                when((2..=4).contains(&v), I64),
                Some(Arr(
                    vec![
                        Str,
                        Arr(s(vec![Some(I32), Some(I64), when(v >= 6, I32), Some(NStr)]), false),
                    ],
                    false,
                )),
            ]),
            v >= 8,
        ),
        ApiKey::OffsetFetch if v <= 7 => {
            (s(vec![Some(Str), Some(Arr(vec![Str, ArrI32], v >= 2)), when(v >= 7, Bool)]), v >= 6)
        }
        ApiKey::OffsetFetch => {
            (s(vec![Some(Arr(vec![Str, Arr(vec![Str, ArrI32], true)], false)), Some(Bool)]), true)
        }
        ApiKey::ListGroups => (s(vec![when(v >= 4, ArrStr)]), v >= 3),
        ApiKey::DescribeGroups => (s(vec![Some(ArrStr), when(v >= 3, Bool)]), v >= 5),
        ApiKey::OffsetForLeaderEpoch => (
            s(vec![
                when(v >= 3, I32),
                Some(Arr(
                    vec![Str, Arr(s(vec![Some(I32), when(v >= 2, I32), Some(I32)]), false)],
                    false,
                )),
            ]),
            v >= 4,
        ),
        // Configs: DescribeConfigs v1-4, AlterConfigs v0-2, IncrementalAlterConfigs v0-1.
        ApiKey::DescribeConfigs => (
            s(vec![
                Some(Arr(vec![I8, Str, NArrStr], false)),
                when(v >= 1, Bool),
                when(v >= 3, Bool),
            ]),
            v >= 4,
        ),
        ApiKey::AlterConfigs => (
            s(vec![Some(Arr(vec![I8, Str, Arr(vec![Str, NStr], false)], false)), Some(Bool)]),
            v >= 2,
        ),
        ApiKey::IncrementalAlterConfigs => (
            s(vec![Some(Arr(vec![I8, Str, Arr(vec![Str, I8, NStr], false)], false)), Some(Bool)]),
            v >= 1,
        ),
        ApiKey::CreatePartitions => (
            s(vec![
                Some(Arr(vec![Str, I32, Arr(vec![ArrI32], true)], false)),
                Some(I32),
                Some(Bool),
            ]),
            v >= 2,
        ),
        ApiKey::DeleteGroups => (s(vec![Some(ArrStr)]), v >= 2),
        ApiKey::OffsetDelete => {
            (s(vec![Some(Str), Some(Arr(vec![Str, Arr(vec![I32], false)], false))]), false)
        }
        ApiKey::DescribeLogDirs => (s(vec![Some(Arr(vec![Str, ArrI32], true))]), v >= 2),
        ApiKey::ElectLeaders => {
            (s(vec![when(v >= 1, I8), Some(Arr(vec![Str, ArrI32], true)), Some(I32)]), v >= 2)
        }
        ApiKey::DeleteRecords => {
            (s(vec![Some(Arr(vec![Str, Arr(vec![I32, I64], false)], false)), Some(I32)]), v >= 2)
        }
        _ => return None,
    };
    Some(out)
}

/// Walks `body` along the schema of `api` v`version`; `Err` says why it cannot be a valid request.
pub fn check(api: ApiKey, version: i16, body: &[u8]) -> Result<(), String> {
    with_schema(api, version, |schema| {
        let Some((fields, flexible)) = schema else {
            return Ok(());
        };
        let mut w = Walker { buf: body, pos: 0, flexible: *flexible };
        w.walk(fields)?;
        w.tags()
    })
}

/// API key codes whose schemas are kept once built (Kafka's keys are below 100).
const CACHED_API_CODES: i16 = 128;
/// Versions whose schemas are kept once built (every version served is below).
const CACHED_VERSIONS: i16 = 32;

/// Runs `f` on the schema of `api` v`version`. The schemas of the first [`CACHED_VERSIONS`]
/// versions of every API are built once per process (built per request, their vectors were
/// 0.4 % of a simulated 10 s bench cut's instructions); another version (a hostile header) gets
/// one built for the call, so the table's size does not depend on what clients send.
fn with_schema<T>(api: ApiKey, version: i16, f: impl FnOnce(Option<&(Vec<F>, bool)>) -> T) -> T {
    type Table = Vec<Option<(Vec<F>, bool)>>;
    static TABLE: std::sync::OnceLock<Table> = std::sync::OnceLock::new();
    let code = api as i16;
    if !(0..CACHED_API_CODES).contains(&code) || !(0..CACHED_VERSIONS).contains(&version) {
        return f(schema(api, version).as_ref());
    }
    let table = TABLE.get_or_init(|| {
        let schema_at = |(code, v)| ApiKey::try_from(code).ok().and_then(|api| schema(api, v));
        (0..CACHED_API_CODES)
            .flat_map(|code| (0..CACHED_VERSIONS).map(move |v| (code, v)))
            .map(schema_at)
            .collect()
    });
    let index = code as usize * CACHED_VERSIONS as usize + version as usize;
    f(table[index].as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
    use kafka_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    #[test]
    fn kept_schemas_are_the_built_ones() {
        let mut kept = 0;
        for code in -1..=CACHED_API_CODES {
            let Ok(api) = ApiKey::try_from(code) else { continue };
            for v in -1..=CACHED_VERSIONS + 1 {
                let built = format!("{:?}", schema(api, v));
                let got = with_schema(api, v, |s| format!("{s:?}"));
                assert_eq!(got, built, "{api:?} v{v}");
                kept += usize::from(got != "None");
            }
        }
        // Produce, Fetch, Metadata and the rest of the served APIs over their versions (907
        // schemas when this was written).
        assert!(kept > 800, "only {kept} schemas compared");
    }

    #[test]
    fn real_requests_pass_and_bombs_fail() {
        for v in 4..=16 {
            let mut p = FetchPartition::default();
            p.partition = 1;
            p.partition_max_bytes = 100;
            let mut t = FetchTopic::default();
            if v < 13 {
                t.topic = TopicName(StrBytes::from_static_str("t"));
            }
            t.partitions = vec![p.clone(), p];
            let mut r = FetchRequest::default();
            r.topics = vec![t];
            if v >= 15 {
                r.replica_id = kafka_protocol::messages::BrokerId(-1);
            }
            let mut buf = BytesMut::new();
            r.encode(&mut buf, v).unwrap();
            check(ApiKey::Fetch, v, &buf).unwrap_or_else(|e| panic!("fetch v{v}: {e}"));
        }
        for v in 0..=12 {
            let mut t = MetadataRequestTopic::default();
            t.name = Some(TopicName(StrBytes::from_static_str("abc")));
            let mut r = MetadataRequest::default();
            r.topics = Some(vec![t]);
            let mut buf = BytesMut::new();
            r.encode(&mut buf, v).unwrap();
            check(ApiKey::Metadata, v, &buf).unwrap_or_else(|e| panic!("metadata v{v}: {e}"));
        }
        // Metadata v1 claiming 2^31-1 topics in 4 bytes.
        assert!(check(ApiKey::Metadata, 1, &[0x7f, 0xff, 0xff, 0xff]).is_err());
        assert!(check(ApiKey::Fetch, 12, &[0; 3]).is_err());
    }
}
