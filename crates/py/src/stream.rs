//! Frames across the language boundary through the Arrow PyCapsule
//! interface (`__arrow_c_stream__`): in, any object that exports a stream
//! (polars, pyarrow; pandas through pyarrow); out, an [`ArrowStream`] that
//! polars and pyarrow import without a copy.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::Mutex;

use arrow_array::ffi_stream::{FFI_ArrowArrayStream, RecordBatchStreamReader};
use arrow_array::{RecordBatch, RecordBatchIterator, RecordBatchReader};
use arrow_schema::SchemaRef;
use pyo3::exceptions::{PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyCapsuleMethods};

const STREAM: &std::ffi::CStr = c"arrow_array_stream";

/// The C stream `obj` exports (`__arrow_c_stream__`), with the capsule that
/// owns it (keep it alive while the pointer is used).
fn exported_stream<'py>(
    obj: &Bound<'py, PyAny>,
    name: &str,
) -> PyResult<(Bound<'py, PyAny>, std::ptr::NonNull<std::ffi::c_void>)> {
    if !obj.hasattr("__arrow_c_stream__")? {
        return Err(PyTypeError::new_err(format!(
            "`{name}` is a {}, not a frame: give a polars or pyarrow table (pandas through \
             pyarrow.Table.from_pandas) or a file path",
            obj.get_type().name()?
        )));
    }
    let capsule = obj.call_method1("__arrow_c_stream__", (obj.py().None(),))?;
    let ptr = capsule
        .cast::<PyCapsule>()
        .map_err(|_| {
            PyTypeError::new_err(format!("`{name}`.__arrow_c_stream__ returned no capsule"))
        })?
        .pointer_checked(Some(STREAM))?;
    Ok((capsule, ptr))
}

/// Reads the Arrow stream `obj` exports and writes it as an Arrow IPC file at
/// `path`, the form every reelkit reader takes (the same code path as the
/// command line's, so a frame and a file give the same result).
pub fn frame_to_ipc(obj: &Bound<'_, PyAny>, name: &str, path: &Path) -> PyResult<()> {
    let (_capsule, ptr) = exported_stream(obj, name)?;
    // SAFETY: the capsule is named `arrow_array_stream`, so by the PyCapsule
    // interface it points to a valid `ArrowArrayStream`; `from_raw` moves the
    // stream out and leaves a released one behind, which the capsule's own
    // destructor then skips.
    let reader =
        unsafe { RecordBatchStreamReader::from_raw(ptr.as_ptr().cast()) }.map_err(|e| {
            PyValueError::new_err(format!("`{name}`: not a readable Arrow stream: {e}"))
        })?;
    let schema = reader.schema();
    let file =
        File::create(path).map_err(|e| PyOSError::new_err(format!("{}: {e}", path.display())))?;
    let mut w = arrow_ipc::writer::FileWriter::try_new(BufWriter::new(file), &schema)
        .map_err(|e| PyValueError::new_err(format!("`{name}`: {e}")))?;
    for batch in reader {
        let batch = batch.map_err(|e| PyValueError::new_err(format!("`{name}`: {e}")))?;
        w.write(&batch)
            .map_err(|e| PyValueError::new_err(format!("`{name}`: {e}")))?;
    }
    w.finish()
        .map_err(|e| PyOSError::new_err(format!("{}: {e}", path.display())))?;
    Ok(())
}

/// A polars frame of the Arrow stream `obj` exports, sharing its buffers (no
/// copy): what the A/B pipeline scans, as the command line scans a file.
pub fn frame_to_polars(
    obj: &Bound<'_, PyAny>,
    name: &str,
) -> PyResult<reelkit_logs::polars::prelude::DataFrame> {
    use polars_arrow::array::StructArray;
    use polars_arrow::datatypes::ArrowDataType;
    use polars_arrow::ffi::{ArrowArrayStream, ArrowArrayStreamReader};
    use reelkit_logs::polars::prelude::{Column, DataFrame, Series};
    let bad = |e: &dyn std::fmt::Display| PyValueError::new_err(format!("`{name}`: {e}"));
    let (_capsule, ptr) = exported_stream(obj, name)?;
    // SAFETY: a capsule named `arrow_array_stream` points to a valid C
    // stream (the PyCapsule interface); it is moved out and a released one
    // left behind, so the capsule's destructor does not release it twice.
    let stream = unsafe {
        std::ptr::replace(
            ptr.as_ptr().cast::<ArrowArrayStream>(),
            ArrowArrayStream::empty(),
        )
    };
    // SAFETY: the stream was just taken from a producer that follows the
    // C stream interface.
    let mut reader =
        unsafe { ArrowArrayStreamReader::try_new(Box::new(stream)) }.map_err(|e| bad(&e))?;
    let fields = match reader.field().dtype() {
        ArrowDataType::Struct(f) => f.clone(),
        other => {
            return Err(bad(&format!(
                "a stream of {other:?}, not of a table's rows"
            )))
        }
    };
    let mut chunks: Vec<Vec<Box<dyn polars_arrow::array::Array>>> = vec![Vec::new(); fields.len()];
    // SAFETY: `next` reads the stream's arrays; the reader owns the stream.
    while let Some(array) = unsafe { reader.next() } {
        let array = array.map_err(|e| bad(&e))?;
        let s = array
            .as_any()
            .downcast_ref::<StructArray>()
            .ok_or_else(|| bad(&"a batch that is not a table"))?;
        for (c, v) in chunks.iter_mut().zip(s.values()) {
            c.push(v.clone());
        }
    }
    let mut columns = Vec::with_capacity(fields.len());
    for (f, c) in fields.iter().zip(chunks) {
        let s = Series::try_from((f.name.clone(), c)).map_err(|e| bad(&e))?;
        columns.push(Column::from(s));
    }
    let height = columns.first().map_or(0, |c| c.len());
    DataFrame::new(height, columns).map_err(|e| bad(&e))
}

/// A stream owned by a capsule (`FFI_ArrowArrayStream` holds raw pointers);
/// transparent, so the capsule's pointer is the stream's.
#[repr(transparent)]
struct SendStream(FFI_ArrowArrayStream);

// SAFETY: the stream's private data is a boxed `RecordBatchReader + Send`
// (see `FFI_ArrowArrayStream::new`); nothing in it is tied to a thread.
unsafe impl Send for SendStream {}

/// Record batches handed to Python once, through `__arrow_c_stream__`.
#[derive(Debug)]
#[pyclass(module = "reelkit._reelkit")]
pub struct ArrowStream {
    batches: Mutex<Option<(SchemaRef, Vec<RecordBatch>)>>,
}

impl ArrowStream {
    /// A stream of `batches` of `schema`.
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> ArrowStream {
        ArrowStream {
            batches: Mutex::new(Some((schema, batches))),
        }
    }
}

#[pymethods]
impl ArrowStream {
    /// The Arrow PyCapsule stream (once: a second call is an error).
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        // The schema is what it is; a consumer casts if it wants another.
        let _ = requested_schema;
        let (schema, batches) = self
            .batches
            .lock()
            .map_err(|_| PyValueError::new_err("the stream's lock is poisoned"))?
            .take()
            .ok_or_else(|| PyValueError::new_err("this stream was already consumed"))?;
        let reader: Box<dyn RecordBatchReader + Send> = Box::new(RecordBatchIterator::new(
            batches.into_iter().map(Ok),
            schema,
        ));
        // The capsule's pointer is the stream itself (the value is the first
        // field of pyo3's capsule contents), as the interface wants.
        PyCapsule::new_with_value(py, SendStream(FFI_ArrowArrayStream::new(reader)), STREAM)
    }
}
