//! Experiment assignments: one row per user, `user_id u64, variant string`.

use std::collections::HashMap;
use std::path::Path;

use polars::prelude::*;

use crate::columns;
use crate::error::{Error, Result};
use crate::io::{read_frame, write_frame};
use crate::schema;

/// Users and the arm each was assigned to, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignments {
    /// Each user (unique).
    pub user_id: Vec<u64>,
    /// The arm of the user at the same index.
    pub variant: Vec<String>,
}

impl Assignments {
    /// Validates a frame read from `path`: both columns present and typed, no
    /// nulls, and no user in two arms (a repeated row with the same arm is accepted
    /// and dropped).
    pub fn from_dataframe(path: &Path, df: &DataFrame) -> Result<Assignments> {
        let users = columns::u64s(path, columns::column(path, df, schema::USER_ID)?)?;
        let variants = columns::strings(path, columns::column(path, df, schema::VARIANT)?)?;
        let mut seen: HashMap<u64, usize> = HashMap::with_capacity(users.len());
        let mut out = Assignments::default();
        for (row, (u, v)) in users.into_iter().zip(variants).enumerate() {
            if v.trim().is_empty() {
                return Err(Error::InvalidValue {
                    path: path.to_path_buf(),
                    column: schema::VARIANT.to_string(),
                    row,
                    value: format!("{v:?}"),
                    reason: "an arm needs a name",
                });
            }
            match seen.get(&u) {
                Some(&i) if out.variant[i] == v => continue,
                Some(&i) => {
                    return Err(Error::UserInTwoArms {
                        path: path.to_path_buf(),
                        user_id: u,
                        first: out.variant[i].clone(),
                        second: v,
                        row,
                    })
                }
                None => {
                    seen.insert(u, out.user_id.len());
                    out.user_id.push(u);
                    out.variant.push(v);
                }
            }
        }
        Ok(out)
    }

    /// Number of assigned users.
    pub fn len(&self) -> usize {
        self.user_id.len()
    }

    /// Whether no user is assigned.
    pub fn is_empty(&self) -> bool {
        self.user_id.is_empty()
    }

    /// The assignments as a frame.
    pub fn to_dataframe(&self) -> Result<DataFrame> {
        DataFrame::new(
            self.len(),
            vec![
                Column::new(schema::USER_ID.into(), &self.user_id),
                Column::new(schema::VARIANT.into(), &self.variant),
            ],
        )
        .map_err(|e| Error::polars("<assignments>", e))
    }
}

/// Reads and validates an assignments file (format by extension).
pub fn read_assignments(path: &Path) -> Result<Assignments> {
    let df = read_frame(path)?;
    Assignments::from_dataframe(path, &df)
}

/// Writes assignments atomically (format by extension).
pub fn write_assignments(path: &Path, a: &Assignments) -> Result<()> {
    write_frame(path, &mut a.to_dataframe()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_in_two_arms_is_an_error() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("assign.csv");
        std::fs::write(
            &path,
            "user_id,variant\n1,control\n2,treatment\n1,control\n2,control\n",
        )?;
        let msg = read_assignments(&path).unwrap_err().to_string();
        assert!(msg.contains("user 2") && msg.contains("row 3"), "{msg}");
        assert!(
            msg.contains("treatment") && msg.contains("control"),
            "{msg}"
        );

        std::fs::write(
            &path,
            "user_id,variant\n1,control\n2,treatment\n1,control\n",
        )?;
        let a = read_assignments(&path)?;
        assert_eq!(a.user_id, vec![1, 2]);
        assert_eq!(a.variant, vec!["control", "treatment"]);
        Ok(())
    }
}
