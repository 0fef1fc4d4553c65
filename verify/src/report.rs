//! Bit-exact comparison of results and readable reports of the first
//! difference.
//!
//! The contract is bit equality (docs/NUMERICS.md, first paragraph), so
//! floats are compared by `to_bits`, never with `==`: `==` would call
//! +0 and -0 equal and every NaN unequal to itself, which hides exactly the
//! sign-of-zero and NaN-payload differences the reference models.

use std::fmt;

/// How to show the bits of a [`Mismatch`] as values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueKind {
    /// The bits are an f32.
    F32,
    /// The bits are an i32.
    I32,
}

/// The first differing element of two equally long results, and how many
/// elements differ in total.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Flat index of the first difference; see [`row_col`].
    pub index: usize,
    /// Bits the reference produced there.
    pub expected_bits: u32,
    /// Bits the code under test produced there.
    pub actual_bits: u32,
    /// Total number of differing elements.
    pub count: usize,
    /// Whether the bits are f32 or i32 (only affects [`fmt::Display`]).
    pub kind: ValueKind,
}

impl Mismatch {
    /// `(row, col)` of the first difference in a row-major result with `n`
    /// columns.
    pub fn row_col(&self, n: usize) -> (usize, usize) {
        row_col(self.index, n)
    }

    fn show(&self, bits: u32) -> String {
        match self.kind {
            ValueKind::F32 => format!("{bits:#010x} ({:?})", f32::from_bits(bits)),
            ValueKind::I32 => format!("{bits:#010x} ({})", bits as i32),
        }
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} mismatching element(s); first at index {}: expected {}, actual {}",
            self.count,
            self.index,
            self.show(self.expected_bits),
            self.show(self.actual_bits),
        )
    }
}

/// Converts a flat row-major index into `(row, col)` for `n` columns.
///
/// # Panics
/// If `n` is zero.
pub fn row_col(index: usize, n: usize) -> (usize, usize) {
    assert!(n > 0, "row_col: a matrix with zero columns has no elements");
    (index / n, index % n)
}

fn first_mismatch_bits(
    expected: impl ExactSizeIterator<Item = u32>,
    actual: impl ExactSizeIterator<Item = u32>,
    kind: ValueKind,
) -> Option<Mismatch> {
    assert_eq!(expected.len(), actual.len(), "compared results have different lengths");
    let mut first = None;
    let mut count = 0;
    for (index, (e, a)) in expected.zip(actual).enumerate() {
        if e != a {
            count += 1;
            first.get_or_insert((index, e, a));
        }
    }
    first.map(|(index, expected_bits, actual_bits)| Mismatch { index, expected_bits, actual_bits, count, kind })
}

/// The first element whose f32 *bits* differ, with the total count, or
/// `None` if all bits are equal.
///
/// # Panics
/// If the lengths differ (a shape bug in the test, not a result to report).
pub fn first_mismatch_f32(expected: &[f32], actual: &[f32]) -> Option<Mismatch> {
    first_mismatch_bits(expected.iter().map(|x| x.to_bits()), actual.iter().map(|x| x.to_bits()), ValueKind::F32)
}

/// The first differing i32 element, with the total count, or `None`.
///
/// # Panics
/// If the lengths differ.
pub fn first_mismatch_i32(expected: &[i32], actual: &[i32]) -> Option<Mismatch> {
    first_mismatch_bits(expected.iter().map(|&x| x as u32), actual.iter().map(|&x| x as u32), ValueKind::I32)
}

/// Panics with a full report (including row and column for `n` columns)
/// unless `expected` and `actual` have identical bits.
#[track_caller]
pub fn assert_same_f32(expected: &[f32], actual: &[f32], n: usize) {
    if let Some(m) = first_mismatch_f32(expected, actual) {
        let (row, col) = m.row_col(n);
        panic!("{m} (row {row}, col {col} of {n} columns)");
    }
}

/// Panics with a full report unless `expected` and `actual` are equal.
#[track_caller]
pub fn assert_same_i32(expected: &[i32], actual: &[i32], n: usize) {
    if let Some(m) = first_mismatch_i32(expected, actual) {
        let (row, col) = m.row_col(n);
        panic!("{m} (row {row}, col {col} of {n} columns)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_bits_are_no_mismatch() {
        let nan = f32::from_bits(0x7FC1_0000);
        assert_eq!(first_mismatch_f32(&[1.0, nan, -0.0], &[1.0, nan, -0.0]), None);
        assert_eq!(first_mismatch_i32(&[1, -2], &[1, -2]), None);
        assert_same_f32(&[nan], &[nan], 1);
    }

    #[test]
    fn zero_signs_and_nan_payloads_count() {
        let m = first_mismatch_f32(&[1.0, 0.0, 2.0, 3.0], &[1.0, -0.0, 2.5, 3.0]).unwrap();
        assert_eq!(
            m,
            Mismatch { index: 1, expected_bits: 0, actual_bits: 0x8000_0000, count: 2, kind: ValueKind::F32 }
        );
        let a = f32::from_bits(0x7FC1_0000);
        let b = f32::from_bits(0x7FC2_0000);
        assert_eq!(first_mismatch_f32(&[a], &[b]).unwrap().count, 1);
    }

    #[test]
    fn display_shows_hex_values_and_count() {
        let m = first_mismatch_f32(&[0.0, 1.0, 2.0], &[0.0, f32::from_bits(0xFFC0_0000), 2.0]).unwrap();
        let text = m.to_string();
        assert_eq!(
            text,
            "1 mismatching element(s); first at index 1: expected 0x3f800000 (1.0), actual 0xffc00000 (NaN)"
        );
        let m = first_mismatch_i32(&[5, i32::MIN], &[5, i32::MAX]).unwrap();
        assert!(m.to_string().contains("0x80000000 (-2147483648)"));
        assert!(m.to_string().contains("0x7fffffff (2147483647)"));
    }

    #[test]
    fn row_col_of_flat_index() {
        assert_eq!(row_col(0, 4), (0, 0));
        assert_eq!(row_col(7, 4), (1, 3));
        assert_eq!(row_col(8, 4), (2, 0));
    }

    #[test]
    #[should_panic(expected = "row 1, col 2")]
    fn assert_reports_position() {
        assert_same_i32(&[0, 0, 0, 0, 0, 1], &[0; 6], 3);
    }
}
