//! One way to read a stored row, whichever backend it came from, so each store maps a row to a
//! domain value once (in its `store/rows.rs`) instead of once per backend.
//!
//! Both backends store the same column types (TEXT, BIGINT/INTEGER, BYTEA/BLOB, NULL), so a
//! column readable by rusqlite and by tokio-postgres is read the same way from either, and a
//! [`Value`] binds as a parameter to either: a store lists a row's values once.

use std::borrow::Cow;
use std::error::Error;

use bytes::BytesMut;
use tokio_postgres::types::{IsNull, ToSql, Type};

/// A value both backends can read from a column: `String`, `i16`, `i32`, `i64`, `Vec<u8>`,
/// `bool`, and `Option` of those.
pub trait Column: rusqlite::types::FromSql + for<'a> tokio_postgres::types::FromSql<'a> {}

impl<T> Column for T where T: rusqlite::types::FromSql + for<'a> tokio_postgres::types::FromSql<'a> {}

/// A row of either backend, read by column position (the stores' column lists fix the order).
pub trait Row {
    /// The backend's error, which each store's error enum converts from.
    type Error;

    /// Column `i` as `T`.
    ///
    /// # Errors
    ///
    /// The column is missing or holds another type.
    fn column<T: Column>(&self, i: usize) -> Result<T, Self::Error>;

    /// Column `i`, a stored count (BIGINT), as the `u32` the domain holds.
    ///
    /// # Errors
    ///
    /// The column does not read, or holds a value out of range (the row is corrupt).
    fn count(&self, i: usize, what: &'static str) -> Result<u32, RowError<Self::Error>> {
        let value = self.column(i).map_err(RowError::Backend)?;
        Ok(count(value, what)?)
    }

    /// Column `i`, a 32-byte BLOB/BYTEA (a MAC, a hash).
    ///
    /// # Errors
    ///
    /// The column does not read, or is another length (the row is corrupt).
    fn blob32(&self, i: usize, what: &'static str) -> Result<[u8; 32], RowError<Self::Error>> {
        let value = self.column(i).map_err(RowError::Backend)?;
        Ok(blob32(value, what)?)
    }
}

/// What a query's mapped rows are collected into, on either backend
/// ([`crate::postgres::Db::fetch`], [`crate::sqlite::query`]): all of them, or the first.
pub trait Rows<T>: Sized {
    /// The mapped rows, as this collection: read only as far as it needs (a point query stops
    /// at the first, without collecting anything).
    ///
    /// # Errors
    ///
    /// The first row that failed to read or map.
    fn from_rows<E>(rows: impl Iterator<Item = Result<T, E>>) -> Result<Self, E>;
}

impl<T> Rows<T> for Vec<T> {
    fn from_rows<E>(rows: impl Iterator<Item = Result<T, E>>) -> Result<Self, E> {
        rows.collect()
    }
}

/// The first row, for a point query (on a unique key: there is at most one).
impl<T> Rows<T> for Option<T> {
    fn from_rows<E>(mut rows: impl Iterator<Item = Result<T, E>>) -> Result<Self, E> {
        rows.next().transpose()
    }
}

/// A stored value that does not decode into its domain type; names the column. Each store's
/// error converts from it (`StoreError::Corrupt`).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Corrupt(pub &'static str);

/// Why a column could not be read as a domain value: the backend failed, or the value is
/// corrupt. Each store's error converts from it.
#[derive(Debug)]
pub enum RowError<E> {
    /// The backend's error.
    Backend(E),
    /// The value does not decode (names the column).
    Corrupt(&'static str),
}

/// Makes a store's error convert from [`Corrupt`] and [`RowError`]: `corrupt_rows_are!(StoreError::Corrupt)`,
/// where the variant holds the column's name.
#[macro_export]
macro_rules! corrupt_rows_are {
    ($error:ident :: $variant:ident) => {
        impl From<$crate::row::Corrupt> for $error {
            fn from(c: $crate::row::Corrupt) -> Self {
                Self::$variant(c.0)
            }
        }

        impl<E> From<$crate::row::RowError<E>> for $error
        where
            Self: From<E>,
        {
            fn from(e: $crate::row::RowError<E>) -> Self {
                match e {
                    $crate::row::RowError::Backend(e) => e.into(),
                    $crate::row::RowError::Corrupt(what) => Self::$variant(what),
                }
            }
        }
    };
}
pub use corrupt_rows_are;

impl<E> From<Corrupt> for RowError<E> {
    fn from(c: Corrupt) -> Self {
        Self::Corrupt(c.0)
    }
}

impl Row for rusqlite::Row<'_> {
    type Error = rusqlite::Error;

    fn column<T: Column>(&self, i: usize) -> Result<T, rusqlite::Error> {
        self.get(i)
    }
}

impl Row for tokio_postgres::Row {
    type Error = tokio_postgres::Error;

    fn column<T: Column>(&self, i: usize) -> Result<T, tokio_postgres::Error> {
        self.try_get(i)
    }
}

/// A parameter either backend binds: text, an integer of one of PostgreSQL's widths, or bytes,
/// each possibly NULL (SQLite stores every width as INTEGER).
#[derive(Clone, Debug)]
pub enum Value<'a> {
    /// TEXT.
    Text(Option<Cow<'a, str>>),
    /// SMALLINT.
    SmallInt(Option<i16>),
    /// INTEGER.
    Integer(Option<i32>),
    /// BIGINT.
    BigInt(Option<i64>),
    /// BYTEA (PostgreSQL), BLOB (SQLite).
    Bytes(Option<&'a [u8]>),
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Self::Text(Some(Cow::Borrowed(v)))
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(v: &'a String) -> Self {
        Self::Text(Some(Cow::Borrowed(v)))
    }
}

impl From<String> for Value<'_> {
    fn from(v: String) -> Self {
        Self::Text(Some(Cow::Owned(v)))
    }
}

impl<'a> From<&'a Option<String>> for Value<'a> {
    fn from(v: &'a Option<String>) -> Self {
        Self::Text(v.as_deref().map(Cow::Borrowed))
    }
}

impl<'a> From<Option<&'a str>> for Value<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Self::Text(v.map(Cow::Borrowed))
    }
}

impl From<Option<u8>> for Value<'_> {
    fn from(v: Option<u8>) -> Self {
        Self::SmallInt(v.map(i16::from))
    }
}

impl From<u8> for Value<'_> {
    fn from(v: u8) -> Self {
        Some(v).into()
    }
}

impl From<Option<u16>> for Value<'_> {
    fn from(v: Option<u16>) -> Self {
        Self::Integer(v.map(i32::from))
    }
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Self::BigInt(Some(v))
    }
}

impl From<Option<i64>> for Value<'_> {
    fn from(v: Option<i64>) -> Self {
        Self::BigInt(v)
    }
}

impl From<u32> for Value<'_> {
    fn from(v: u32) -> Self {
        Self::BigInt(Some(i64::from(v)))
    }
}

impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(v: &'a [u8]) -> Self {
        Self::Bytes(Some(v))
    }
}

impl<'a> From<Option<&'a [u8]>> for Value<'a> {
    fn from(v: Option<&'a [u8]>) -> Self {
        Self::Bytes(v)
    }
}

impl<'a, const N: usize> From<&'a [u8; N]> for Value<'a> {
    fn from(v: &'a [u8; N]) -> Self {
        Self::Bytes(Some(v))
    }
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Self::Text(v) => rusqlite::ToSql::to_sql(v),
            Self::SmallInt(v) => rusqlite::ToSql::to_sql(v),
            Self::Integer(v) => rusqlite::ToSql::to_sql(v),
            Self::BigInt(v) => rusqlite::ToSql::to_sql(v),
            Self::Bytes(v) => rusqlite::ToSql::to_sql(v),
        }
    }
}

impl ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Self::Text(v) => ToSql::to_sql(v, ty, out),
            Self::SmallInt(v) => ToSql::to_sql(v, ty, out),
            Self::Integer(v) => ToSql::to_sql(v, ty, out),
            Self::BigInt(v) => ToSql::to_sql(v, ty, out),
            Self::Bytes(v) => ToSql::to_sql(v, ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <&str as ToSql>::accepts(ty)
            || <i16 as ToSql>::accepts(ty)
            || <i32 as ToSql>::accepts(ty)
            || <i64 as ToSql>::accepts(ty)
            || <&[u8] as ToSql>::accepts(ty)
    }

    // Checked per variant, so a text value bound to a BIGINT column is refused as it would be
    // unwrapped.
    fn to_sql_checked(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Self::Text(v) => ToSql::to_sql_checked(v, ty, out),
            Self::SmallInt(v) => ToSql::to_sql_checked(v, ty, out),
            Self::Integer(v) => ToSql::to_sql_checked(v, ty, out),
            Self::BigInt(v) => ToSql::to_sql_checked(v, ty, out),
            Self::Bytes(v) => ToSql::to_sql_checked(v, ty, out),
        }
    }
}

/// A 32-byte BLOB/BYTEA column (a MAC, a hash); `what` names it when it is another length.
///
/// # Errors
///
/// The column is not 32 bytes: the row is corrupt.
pub fn blob32(bytes: Vec<u8>, what: &'static str) -> Result<[u8; 32], Corrupt> {
    bytes.try_into().map_err(|_| Corrupt(what))
}

/// A stored count (BIGINT in PostgreSQL) as the `u32` the domain holds; `what` names the column
/// when it does not fit.
///
/// # Errors
///
/// The value is negative or larger than `u32::MAX`: the row is corrupt.
pub fn count(value: i64, what: &'static str) -> Result<u32, Corrupt> {
    u32::try_from(value).map_err(|_| Corrupt(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_two<R: Row>(r: &R) -> Result<(String, Option<i64>), R::Error> {
        Ok((r.column(0)?, r.column(1)?))
    }

    #[test]
    fn a_sqlite_row_reads_through_the_trait() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let got = conn
            .query_row("SELECT 'a', NULL", [], |r| first_two(r))
            .unwrap();
        assert_eq!(got, ("a".to_owned(), None));
    }

    #[test]
    fn values_bind_to_sqlite_as_their_variant() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let text = Some("x".to_owned());
        let values = [
            Value::from(&text),
            Value::from(7_u32),
            Value::from(&[1_u8, 2][..]),
            Value::from(None::<i64>),
        ];
        let got: (String, i64, Vec<u8>, Option<i64>) = conn
            .query_row("SELECT ?1, ?2, ?3, ?4", values, |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap();
        assert_eq!(got, ("x".to_owned(), 7, vec![1, 2], None));
    }

    #[test]
    fn a_value_refuses_a_column_of_another_type_in_postgres() {
        let mut out = BytesMut::new();
        assert!(ToSql::to_sql_checked(&Value::from(7_i64), &Type::INT8, &mut out).is_ok());
        assert!(ToSql::to_sql_checked(&Value::from("x"), &Type::INT8, &mut out).is_err());
        assert!(ToSql::to_sql_checked(&Value::from(7_i64), &Type::TEXT, &mut out).is_err());
        assert!(ToSql::to_sql_checked(&Value::from(7_u8), &Type::INT2, &mut out).is_ok());
        assert!(ToSql::to_sql_checked(&Value::from(7_u8), &Type::INT8, &mut out).is_err());
    }

    #[test]
    fn counts_out_of_range_name_their_column() {
        assert_eq!(count(7, "attempts"), Ok(7));
        assert_eq!(count(-1, "attempts"), Err(Corrupt("attempts")));
        assert_eq!(
            count(i64::from(u32::MAX) + 1, "attempts"),
            Err(Corrupt("attempts"))
        );
    }
}
