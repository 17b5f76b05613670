//! `reelkit._reelkit.Model`: a model file served in process (the same
//! `Ranker` the server and `reelkit recommend` use).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float32Array, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use pyo3::exceptions::{PyKeyError, PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use reelkit_logs::{InteractionColumns, Layout};
use reelkit_ranker::{model_file::ExternalIds, Ranker, Retrieval, Surface};

use crate::errors::{blocking, to_py};
use crate::stream::ArrowStream;

/// A user or item id from Python: a number or a string.
#[derive(Debug, Clone, FromPyObject)]
pub enum PyId {
    /// An integer id.
    Number(u64),
    /// A string id.
    Text(String),
}

impl std::fmt::Display for PyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PyId::Number(n) => write!(f, "{n}"),
            PyId::Text(s) => write!(f, "{s:?}"),
        }
    }
}

/// `id` in a model's numbering of one side: numbers as they are for a
/// numeric side, looked up (as text) in a string-id side's dictionary.
fn resolve(
    id: &PyId,
    keyed: bool,
    what: &str,
    of_key: impl Fn(&str) -> Option<u64>,
) -> PyResult<Option<u64>> {
    match (id, keyed) {
        (PyId::Number(n), false) => Ok(Some(*n)),
        (PyId::Text(s), false) => Err(PyValueError::new_err(format!(
            "{what} {s:?} is not a number, and this model's {what}s are numbers"
        ))),
        (PyId::Number(n), true) => Ok(of_key(&n.to_string())),
        (PyId::Text(s), true) => Ok(of_key(s)),
    }
}

fn parse_retrieval(name: &str) -> PyResult<Retrieval> {
    name.parse()
        .map_err(|e: reelkit_ranker::retrieval::UnknownRetrieval| {
            PyValueError::new_err(e.to_string())
        })
}

/// A trained model, served in process.
#[derive(Debug)]
#[pyclass(module = "reelkit._reelkit", frozen)]
pub struct Model {
    ranker: Arc<Ranker>,
    /// Trained (or imported) in this process: `save` writes it.
    owned: Option<Arc<reelkit_ranker::Model>>,
    /// Loaded from this file: `save` copies it, if it is still what was loaded.
    source: Option<PathBuf>,
}

impl Model {
    /// A model trained or imported in this process.
    pub fn from_owned(m: reelkit_ranker::Model) -> Model {
        let m = Arc::new(m);
        Model {
            ranker: Arc::new(Ranker::from_model((*m).clone()).with_retrieval(Retrieval::Exact)),
            owned: Some(m),
            source: None,
        }
    }

    /// The id as this model numbers its users (`None`: unknown).
    fn user(&self, id: &PyId) -> PyResult<Option<u64>> {
        let r = &self.ranker;
        resolve(id, r.keyed().0, "user", |k| r.user_of_key(k))
    }

    fn item(&self, id: &PyId) -> PyResult<Option<u64>> {
        let r = &self.ranker;
        resolve(id, r.keyed().1, "item", |k| r.item_of_key(k))
    }

    /// An id column as trained: strings for a string-id side.
    fn id_column(&self, ids: &[u64], users: bool) -> ArrayRef {
        let r = &self.ranker;
        let keyed = if users { r.keyed().0 } else { r.keyed().1 };
        if keyed {
            let key = |i: u64| {
                if users { r.user_key(i) } else { r.item_key(i) }
                    .unwrap_or_default()
                    .to_string()
            };
            Arc::new(StringArray::from(
                ids.iter().map(|&i| key(i)).collect::<Vec<_>>(),
            ))
        } else {
            Arc::new(UInt64Array::from(ids.to_vec()))
        }
    }

    fn id_type(&self, users: bool) -> DataType {
        let keyed = if users {
            self.ranker.keyed().0
        } else {
            self.ranker.keyed().1
        };
        if keyed {
            DataType::Utf8
        } else {
            DataType::UInt64
        }
    }
}

/// A factor table's memory, shown to numpy through `__array_interface__`
/// (no copy; numpy keeps this object, and so the model's memory, alive).
#[derive(Debug)]
#[pyclass(module = "reelkit._reelkit", frozen)]
pub struct FactorView {
    buf: arrow_buffer::ScalarBuffer<f32>,
    rows: usize,
    dim: usize,
}

#[pymethods]
impl FactorView {
    /// numpy's array interface (version 3), read-only.
    #[getter]
    fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("shape", (self.rows, self.dim))?;
        d.set_item("typestr", "<f4")?;
        d.set_item("data", (self.buf.as_ptr() as usize, true))?;
        d.set_item("version", 3)?;
        Ok(d)
    }
}

#[pymethods]
impl Model {
    /// Opens a model file; `retrieval` is exact, f16, int8 or ivf.
    #[staticmethod]
    #[pyo3(signature = (path, retrieval="exact"))]
    fn load(py: Python<'_>, path: PathBuf, retrieval: &str) -> PyResult<Model> {
        let retrieval = parse_retrieval(retrieval)?;
        let p = path.clone();
        let ranker = blocking(py, None, move || {
            Ranker::open(&p).map(|r| r.with_retrieval(retrieval))
        })?
        .map_err(to_py)?;
        Ok(Model {
            ranker: Arc::new(ranker),
            owned: None,
            source: Some(path),
        })
    }

    /// The same model with another retrieval (exact, f16, int8 or ivf).
    fn with_retrieval(&self, py: Python<'_>, retrieval: &str) -> PyResult<Model> {
        let retrieval = parse_retrieval(retrieval)?;
        let (owned, source) = (self.owned.clone(), self.source.clone());
        let ranker = match (&owned, &source) {
            (Some(m), _) => {
                let m = (**m).clone();
                blocking(py, None, move || {
                    Ranker::from_model(m).with_retrieval(retrieval)
                })?
            }
            (None, Some(p)) => {
                let p = p.clone();
                blocking(py, None, move || {
                    Ranker::open(&p).map(|r| r.with_retrieval(retrieval))
                })?
                .map_err(to_py)?
            }
            (None, None) => return Err(PyValueError::new_err("this model has no source")),
        };
        Ok(Model {
            ranker: Arc::new(ranker),
            owned,
            source,
        })
    }

    /// The retrieval in use.
    #[getter]
    fn retrieval(&self) -> &'static str {
        self.ranker.retrieval().as_str()
    }

    /// Writes the model file (atomically). A model loaded from a file is
    /// copied, provided the file still holds what was loaded.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        if let Some(m) = &self.owned {
            let m = m.clone();
            return blocking(py, None, move || m.save(&path))?.map_err(to_py);
        }
        let Some(src) = self.source.clone() else {
            return Err(PyValueError::new_err("this model has no source to save"));
        };
        let hash = self.ranker.model().content_hash;
        blocking(py, None, move || -> PyResult<()> {
            let now = reelkit_ranker::MappedModel::open(&src).map_err(to_py)?;
            if now.content_hash != hash {
                return Err(PyValueError::new_err(format!(
                    "{} changed since this model was loaded: load it again to save it",
                    src.display()
                )));
            }
            let tmp = path.with_extension("arrow.part");
            std::fs::copy(&src, &tmp)
                .and_then(|_| std::fs::rename(&tmp, &path))
                .map_err(|e| {
                    let _ = std::fs::remove_file(&tmp);
                    PyOSError::new_err(format!("writing {}: {e}", path.display()))
                })
        })?
    }

    /// Embedding dimension.
    #[getter]
    fn dim(&self) -> usize {
        self.ranker.dim()
    }

    /// Users the model knows.
    #[getter]
    fn n_users(&self) -> usize {
        self.ranker.model().users.len()
    }

    /// Items the model knows.
    #[getter]
    fn n_items(&self) -> usize {
        self.ranker.model().items.len()
    }

    /// The surfaces a per-surface model has vectors for.
    #[getter]
    fn surfaces(&self) -> Vec<String> {
        self.ranker.surfaces().to_vec()
    }

    /// How the model was made (parameters, source), as JSON.
    #[getter]
    fn meta_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.ranker.model().meta)
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// The users' ids, by row (numbers or strings).
    #[getter]
    fn user_ids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let m = self.ranker.model();
        ids_by_row(py, m.user_keys.as_ref().map(|k| k.keys()), m.users.ids())
    }

    /// The items' ids, by row.
    #[getter]
    fn item_ids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let m = self.ranker.model();
        ids_by_row(py, m.item_keys.as_ref().map(|k| k.keys()), m.items.ids())
    }

    /// The user factors' memory (users × dim, f32), for numpy without a copy.
    #[getter]
    fn user_factors(&self) -> FactorView {
        let m = self.ranker.model();
        FactorView {
            buf: m.user_factors.clone(),
            rows: m.users.len(),
            dim: m.dim,
        }
    }

    /// The item factors' memory (items × dim, f32).
    #[getter]
    fn item_factors(&self) -> FactorView {
        let m = self.ranker.model();
        FactorView {
            buf: m.item_factors.clone(),
            rows: m.items.len(),
            dim: m.dim,
        }
    }

    /// Top-`k` items of each user (all users when `users` is None): a
    /// stream of `user_id, item_id, rank, score`. `exclude`: an Arrow IPC
    /// file of interactions (`user_col`, `item_col`) not to recommend.
    /// Unknown users get the popularity fallback, as on the command line.
    #[pyo3(signature = (users=None, k=10, exclude=None, user_col="user_id", item_col="item_id", surface=None))]
    #[allow(clippy::too_many_arguments)]
    fn recommend(
        &self,
        py: Python<'_>,
        users: Option<Vec<PyId>>,
        k: usize,
        exclude: Option<PathBuf>,
        user_col: &str,
        item_col: &str,
        surface: Option<&str>,
    ) -> PyResult<ArrowStream> {
        if k == 0 {
            return Err(PyValueError::new_err("k must be 1 or more"));
        }
        let surface = surface
            .map(|s| {
                s.parse::<Surface>()
                    .map_err(|e| PyValueError::new_err(e.to_string()))
            })
            .transpose()?;
        if let Some(s) = surface {
            if !self.ranker.surfaces().iter().any(|n| n == s.as_str()) {
                return Err(PyValueError::new_err(format!(
                    "surface {:?}: this model has no per-surface vectors (train it with \
                     per_surface=True)",
                    s.as_str()
                )));
            }
        }
        let ids: Vec<u64> = match &users {
            None => self.ranker.model().users.ids().to_vec(),
            Some(list) => {
                let mut out = Vec::with_capacity(list.len());
                for u in list {
                    match self.user(u)? {
                        Some(id) => out.push(id),
                        // A string-id model's unknown user: the fallback,
                        // under an id no such model holds.
                        None => out.push(u64::MAX),
                    }
                }
                out
            }
        };
        let ranker = self.ranker.clone();
        let cols = InteractionColumns {
            user: user_col.to_string(),
            item: item_col.to_string(),
            weight: None,
            ts: None,
            text: Layout::default(),
        };
        let rows = blocking(py, None, move || -> reelkit_lab::Result<_> {
            let mut excl: HashMap<u64, Vec<u64>> = HashMap::new();
            if let Some(path) = exclude {
                let t = reelkit_lab::training::Triplets::read(&path, &cols)?;
                let (us, is) = t.model_ids(&ranker);
                for (u, i) in us.iter().zip(&is) {
                    if let (Some(u), Some(i)) = (u, i) {
                        excl.entry(*u).or_default().push(*i);
                    }
                }
            }
            let mut rows: (Vec<u64>, Vec<u64>, Vec<u32>, Vec<f32>) = Default::default();
            ranker.recommend_users(&ids, k, &excl, false, surface, |u, recs| {
                for (rank, rec) in recs.items.iter().enumerate() {
                    rows.0.push(u);
                    rows.1.push(rec.item_id);
                    rows.2.push(rank as u32 + 1);
                    rows.3.push(rec.score);
                }
            });
            Ok(rows)
        })?
        .map_err(to_py)?;
        // Users as asked (an unknown string user keeps its string).
        let user_col: ArrayRef = match (&users, self.ranker.keyed().0) {
            (Some(list), true) => {
                let asked: HashMap<u64, String> = list
                    .iter()
                    .map(|u| {
                        let s = match u {
                            PyId::Number(n) => n.to_string(),
                            PyId::Text(s) => s.clone(),
                        };
                        (self.ranker.user_of_key(&s).unwrap_or(u64::MAX), s)
                    })
                    .collect();
                Arc::new(StringArray::from(
                    rows.0
                        .iter()
                        .map(|u| asked.get(u).cloned().unwrap_or_default())
                        .collect::<Vec<_>>(),
                ))
            }
            _ => self.id_column(&rows.0, true),
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_id", self.id_type(true), false),
            Field::new("item_id", self.id_type(false), false),
            Field::new("rank", DataType::UInt32, false),
            Field::new("score", DataType::Float32, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                user_col,
                self.id_column(&rows.1, false),
                Arc::new(UInt32Array::from(rows.2)),
                Arc::new(Float32Array::from(rows.3)),
            ],
        )
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(ArrowStream::new(schema, vec![batch]))
    }

    /// The `k` items whose embeddings score highest against `item`'s
    /// (itself excluded): a stream of `item_id, rank, score`.
    #[pyo3(signature = (item, k=10))]
    fn similar_items(&self, item: PyId, k: usize) -> PyResult<ArrowStream> {
        if k == 0 {
            return Err(PyValueError::new_err("k must be 1 or more"));
        }
        let recs = self
            .item(&item)?
            .and_then(|i| self.ranker.similar(i, k))
            .ok_or_else(|| PyKeyError::new_err(format!("item {item} is not in this model")))?;
        let ids: Vec<u64> = recs.iter().map(|r| r.item_id).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("item_id", self.id_type(false), false),
            Field::new("rank", DataType::UInt32, false),
            Field::new("score", DataType::Float32, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                self.id_column(&ids, false),
                Arc::new(UInt32Array::from(
                    (1..=ids.len() as u32).collect::<Vec<_>>(),
                )),
                Arc::new(Float32Array::from(
                    recs.iter().map(|r| r.score).collect::<Vec<_>>(),
                )),
            ],
        )
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(ArrowStream::new(schema, vec![batch]))
    }

    /// Scores of `items` for a known `user`, as a ranking shows them
    /// (`None` for an item the model does not know).
    fn score(&self, user: PyId, items: Vec<PyId>) -> PyResult<Vec<Option<f32>>> {
        let u = self
            .user(&user)?
            .filter(|&u| self.ranker.user_embedding(u).is_some())
            .ok_or_else(|| PyKeyError::new_err(format!("user {user} is not in this model")))?;
        items
            .iter()
            .map(|i| match self.item(i)? {
                None => Ok(None),
                Some(i) => match self.ranker.score(u, &[i]) {
                    Ok(s) => Ok(s.first().copied()),
                    Err(reelkit_ranker::Error::UnknownItem(_)) => Ok(None),
                    Err(e) => Err(to_py(e)),
                },
            })
            .collect()
    }

    /// A model of factors trained elsewhere: ids (all numbers or all
    /// strings) and little-endian f32 vectors, row-major, `dim` per id.
    #[staticmethod]
    fn from_factors(
        user_ids: Vec<PyId>,
        user_factors: &[u8],
        item_ids: Vec<PyId>,
        item_factors: &[u8],
        dim: usize,
    ) -> PyResult<Model> {
        let ids = |v: Vec<PyId>, what: &str| -> PyResult<ExternalIds> {
            if v.iter().all(|x| matches!(x, PyId::Number(_))) {
                Ok(ExternalIds::Numbers(
                    v.into_iter()
                        .map(|x| match x {
                            PyId::Number(n) => n,
                            PyId::Text(_) => 0,
                        })
                        .collect(),
                ))
            } else if v.iter().all(|x| matches!(x, PyId::Text(_))) {
                Ok(ExternalIds::Strings(
                    v.into_iter()
                        .map(|x| match x {
                            PyId::Text(s) => s,
                            PyId::Number(n) => n.to_string(),
                        })
                        .collect(),
                ))
            } else {
                Err(PyValueError::new_err(format!(
                    "{what}: all numbers or all strings, not a mix"
                )))
            }
        };
        let floats = |b: &[u8]| -> Vec<f32> {
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        let m = reelkit_ranker::Model::from_factors(
            ids(user_ids, "user_ids")?,
            floats(user_factors),
            ids(item_ids, "item_ids")?,
            floats(item_factors),
            dim,
        )
        .map_err(to_py)?;
        Ok(Model::from_owned(m))
    }

    /// A model file from factor tables on disk (Spark MLlib ALS's saved
    /// `userFactors`/`itemFactors`, or id + vector columns).
    #[staticmethod]
    fn import_factors(py: Python<'_>, users: PathBuf, items: PathBuf) -> PyResult<Model> {
        let m = blocking(py, None, move || {
            reelkit_lab::training::import_factors(&users, &items)
        })?
        .map_err(to_py)?;
        Ok(Model::from_owned(m))
    }

    fn __repr__(&self) -> String {
        let src = self.source.as_deref().map_or_else(
            || "in memory".to_string(),
            |p: &Path| p.display().to_string(),
        );
        format!(
            "Model({} users × {} items, dim {}, {}, retrieval {})",
            self.n_users(),
            self.n_items(),
            self.dim(),
            src,
            self.retrieval()
        )
    }
}

/// One side's ids by row: its string keys when it was trained on strings,
/// else its numbers.
fn ids_by_row<'py>(
    py: Python<'py>,
    keys: Option<&[String]>,
    ids: &[u64],
) -> PyResult<Bound<'py, PyAny>> {
    match keys {
        Some(k) => k.into_pyobject(py).map(|x| x.into_any()),
        None => ids.into_pyobject(py).map(|x| x.into_any()),
    }
}
