//! The PostgreSQL peer: a `stock` row per SKU; a hold is a transaction that locks its rows
//! in SKU order (`SELECT ... FOR UPDATE`, so concurrent holds never deadlock), checks them,
//! takes the units and records the hold; release gives them back the same way. Calls share a
//! fixed pool of connections, each with its statements prepared once.

use std::sync::Mutex;

use anyhow::Context;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, Statement};

use super::{Line, Reserved, Store};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS stock (
    sku text PRIMARY KEY,
    available bigint NOT NULL CHECK (available >= 0)
);
CREATE TABLE IF NOT EXISTS holds (
    id text PRIMARY KEY,
    skus text[] NOT NULL,
    quantities bigint[] NOT NULL
);";

const AVAILABILITY: &str = "SELECT sku, available FROM stock WHERE sku = ANY($1)";
const LOCK: &str = "SELECT sku, available FROM stock WHERE sku = ANY($1) ORDER BY sku FOR UPDATE";
/// Takes the units and records the hold in one statement; a taken id fails on the key.
const TAKE: &str = "
WITH taken AS (
    UPDATE stock SET available = available - line.quantity
    FROM unnest($1::text[], $2::bigint[]) AS line(sku, quantity)
    WHERE stock.sku = line.sku
)
INSERT INTO holds (id, skus, quantities) VALUES ($3, $1, $2)";
const FORGET: &str = "DELETE FROM holds WHERE id = $1 RETURNING skus, quantities";
const GIVE_BACK: &str = "
UPDATE stock SET available = available + line.quantity
FROM unnest($1::text[], $2::bigint[]) AS line(sku, quantity)
WHERE stock.sku = line.sku";
const LOAD: &str = "
INSERT INTO stock (sku, available) SELECT * FROM unnest($1::text[], $2::bigint[])
ON CONFLICT (sku) DO UPDATE SET available = EXCLUDED.available";

/// A connection and its prepared statements.
struct Conn {
    client: Client,
    availability: Statement,
    lock: Statement,
    take: Statement,
    forget: Statement,
    give_back: Statement,
    load: Statement,
}

impl Conn {
    async fn open(url: &str) -> anyhow::Result<Self> {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .context("connecting to PostgreSQL")?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                eprintln!("postgres peer: connection ended: {error}");
            }
        });
        Ok(Self {
            availability: client.prepare(AVAILABILITY).await?,
            lock: client.prepare(LOCK).await?,
            take: client.prepare(TAKE).await?,
            forget: client.prepare(FORGET).await?,
            give_back: client.prepare(GIVE_BACK).await?,
            load: client.prepare(LOAD).await?,
            client,
        })
    }
}

/// A fixed set of connections; a call waits for a free one.
struct Pool {
    idle: Mutex<Vec<Conn>>,
    free: Semaphore,
}

/// A connection taken from the pool, put back when dropped.
struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
    _permit: SemaphorePermit<'a>,
}

impl Pool {
    async fn get(&self) -> anyhow::Result<Pooled<'_>> {
        let permit = self.free.acquire().await?;
        let conn = self
            .idle
            .lock()
            .map_err(|_| anyhow::anyhow!("pool lock poisoned"))?
            .pop()
            .context("a permit always has an idle connection")?;
        Ok(Pooled {
            pool: self,
            conn: Some(conn),
            _permit: permit,
        })
    }
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("present until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        // Returned before the permit (a later field) is released.
        if let (Some(conn), Ok(mut idle)) = (self.conn.take(), self.pool.idle.lock()) {
            idle.push(conn);
        }
    }
}

pub struct PostgresStore {
    pool: Pool,
}

impl PostgresStore {
    /// Opens `size` connections and creates the tables.
    pub async fn open(url: &str, size: usize) -> anyhow::Result<Self> {
        let setup = tokio_postgres::connect(url, NoTls).await?;
        let (client, connection) = setup;
        let connection = tokio::spawn(connection);
        client
            .batch_execute(SCHEMA)
            .await
            .context("creating tables")?;
        drop(client);
        let _ = connection.await;
        let mut conns = Vec::with_capacity(size);
        for _ in 0..size.max(1) {
            conns.push(Conn::open(url).await?);
        }
        Ok(Self {
            pool: Pool {
                free: Semaphore::new(conns.len()),
                idle: Mutex::new(conns),
            },
        })
    }
}

fn columns(lines: &[Line]) -> (Vec<&str>, Vec<i64>) {
    lines.iter().map(|l| (l.sku.as_str(), l.quantity)).unzip()
}

impl Store for PostgresStore {
    async fn availability(&self, skus: &[String]) -> anyhow::Result<Vec<i64>> {
        let conn = self.pool.get().await?;
        let rows = conn.client.query(&conn.availability, &[&skus]).await?;
        let found = |sku: &String| {
            rows.iter()
                .find(|row| row.get::<_, &str>(0) == sku)
                .map_or(0, |row| row.get::<_, i64>(1))
        };
        Ok(skus.iter().map(found).collect())
    }

    async fn reserve(&self, id: &str, lines: &[Line]) -> anyhow::Result<Reserved> {
        let mut conn = self.pool.get().await?;
        let conn = &mut *conn;
        let (skus, quantities) = columns(lines);
        let tx = conn.client.transaction().await?;
        let rows = tx.query(&conn.lock, &[&skus]).await?;
        let short: Vec<String> = lines
            .iter()
            .filter(|line| {
                let available = rows
                    .iter()
                    .find(|row| row.get::<_, &str>(0) == line.sku)
                    .map_or(0, |row| row.get::<_, i64>(1));
                available < line.quantity
            })
            .map(|line| line.sku.clone())
            .collect();
        if !short.is_empty() {
            tx.rollback().await?;
            return Ok(Reserved::Short(short));
        }
        match tx.execute(&conn.take, &[&skus, &quantities, &id]).await {
            Ok(_) => {
                tx.commit().await?;
                Ok(Reserved::Held)
            }
            Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                Ok(Reserved::Duplicate)
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn release(&self, id: &str) -> anyhow::Result<bool> {
        let mut conn = self.pool.get().await?;
        let conn = &mut *conn;
        let tx = conn.client.transaction().await?;
        let Some(hold) = tx.query_opt(&conn.forget, &[&id]).await? else {
            tx.rollback().await?;
            return Ok(false);
        };
        let skus: Vec<String> = hold.get(0);
        let quantities: Vec<i64> = hold.get(1);
        tx.query(&conn.lock, &[&skus]).await?;
        tx.execute(&conn.give_back, &[&skus, &quantities]).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn load(&self, stock: &[Line]) -> anyhow::Result<()> {
        let conn = self.pool.get().await?;
        let (skus, quantities) = columns(stock);
        conn.client
            .execute(&conn.load, &[&skus, &quantities])
            .await?;
        Ok(())
    }
}
