//! The Redis peer: one hash of per-SKU available counters; a hold is checked and taken by one
//! Lua script (EVALSHA), which Redis runs atomically, and its lines are kept in a hash of
//! their own so that release can give them back.

use redis::aio::ConnectionManager;
use redis::Script;

use super::{Line, Reserved, Store};

/// The hash of available units, field per SKU.
const STOCK: &str = "peer:stock";

/// SKUs set per HSET while loading.
const LOAD_CHUNK: usize = 1_000;

/// KEYS: stock, hold; ARGV: sku, quantity, sku, quantity, ... (distinct SKUs).
/// Answers `{"held"}`, `{"duplicate"}`, or `{"short", sku, ...}` with nothing changed.
const RESERVE: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return {'duplicate'} end
local short = {'short'}
for i = 1, #ARGV, 2 do
  local available = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  if available < tonumber(ARGV[i + 1]) then short[#short + 1] = ARGV[i] end
end
if #short > 1 then return short end
for i = 1, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], -tonumber(ARGV[i + 1]))
end
redis.call('HSET', KEYS[2], unpack(ARGV))
return {'held'}
";

/// KEYS: stock, hold. Gives the hold's lines back and deletes it; answers 1, or 0 if none.
const RELEASE: &str = r"
local lines = redis.call('HGETALL', KEYS[2])
if #lines == 0 then return 0 end
for i = 1, #lines, 2 do
  redis.call('HINCRBY', KEYS[1], lines[i], lines[i + 1])
end
redis.call('DEL', KEYS[2])
return 1
";

pub struct RedisStore {
    /// One multiplexed connection: concurrent calls are pipelined on it.
    conn: ConnectionManager,
    reserve: Script,
    release: Script,
}

impl RedisStore {
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let conn = ConnectionManager::new(redis::Client::open(url)?).await?;
        Ok(Self {
            conn,
            reserve: Script::new(RESERVE),
            release: Script::new(RELEASE),
        })
    }
}

fn hold_key(id: &str) -> String {
    format!("peer:hold:{id}")
}

impl Store for RedisStore {
    async fn availability(&self, skus: &[String]) -> anyhow::Result<Vec<i64>> {
        let mut conn = self.conn.clone();
        let counts: Vec<Option<i64>> = redis::cmd("HMGET")
            .arg(STOCK)
            .arg(skus)
            .query_async(&mut conn)
            .await?;
        Ok(counts.into_iter().map(Option::unwrap_or_default).collect())
    }

    async fn reserve(&self, id: &str, lines: &[Line]) -> anyhow::Result<Reserved> {
        let mut conn = self.conn.clone();
        let mut invocation = self.reserve.key(STOCK);
        invocation.key(hold_key(id));
        for line in lines {
            invocation.arg(&line.sku).arg(line.quantity);
        }
        let answer: Vec<String> = invocation.invoke_async(&mut conn).await?;
        Ok(match answer.split_first() {
            Some((status, _)) if status == "held" => Reserved::Held,
            Some((status, _)) if status == "duplicate" => Reserved::Duplicate,
            Some((status, skus)) if status == "short" => Reserved::Short(skus.to_vec()),
            _ => anyhow::bail!("unexpected answer from the reserve script: {answer:?}"),
        })
    }

    async fn release(&self, id: &str) -> anyhow::Result<bool> {
        let mut conn = self.conn.clone();
        let released: i64 = self
            .release
            .key(STOCK)
            .key(hold_key(id))
            .invoke_async(&mut conn)
            .await?;
        Ok(released == 1)
    }

    async fn load(&self, stock: &[Line]) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        for chunk in stock.chunks(LOAD_CHUNK) {
            let mut hset = redis::cmd("HSET");
            hset.arg(STOCK);
            for line in chunk {
                hset.arg(&line.sku).arg(line.quantity);
            }
            hset.query_async::<()>(&mut conn).await?;
        }
        Ok(())
    }
}
