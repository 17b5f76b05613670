//! Frames across the language boundary through the Arrow PyCapsule
//! interface (`__arrow_c_stream__`): in, any object that exports a stream
//! (polars, pyarrow; pandas through pyarrow); out, an [`ArrowStream`] that
//! polars and pyarrow import without a copy.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::Mutex;

use arrow_array::ffi_stream::{RecordBatchStreamReader, FFI_ArrowArrayStream};
use arrow_array::{RecordBatch, RecordBatchIterator, RecordBatchReader};
use arrow_schema::SchemaRef;
use pyo3::exceptions::{PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyCapsuleMethods};

const STREAM: &std::ffi::CStr = c"arrow_array_stream";

/// Reads the Arrow stream `obj` exports and writes it as an Arrow IPC file at
/// `path`, the form every reelkit reader takes (the same code path as the
/// command line's, so a frame and a file give the same result).
pub fn frame_to_ipc(obj: &Bound<'_, PyAny>, name: &str, path: &Path) -> PyResult<()> {
    if !obj.hasattr("__arrow_c_stream__")? {
        return Err(PyTypeError::new_err(format!(
            "`{name}` is a {}, not a frame: give a polars or pyarrow table (pandas through \
             pyarrow.Table.from_pandas) or a file path",
            obj.get_type().name()?
        )));
    }
    let capsule = obj.call_method1("__arrow_c_stream__", (obj.py().None(),))?;
    let capsule = capsule
        .cast::<PyCapsule>()
        .map_err(|_| PyTypeError::new_err(format!("`{name}`.__arrow_c_stream__ returned no capsule")))?;
    let ptr = capsule.pointer_checked(Some(STREAM))?;
    // SAFETY: the capsule is named `arrow_array_stream`, so by the PyCapsule
    // interface it points to a valid `ArrowArrayStream`; `from_raw` moves the
    // stream out and leaves a released one behind, which the capsule's own
    // destructor then skips.
    let reader = unsafe { RecordBatchStreamReader::from_raw(ptr.as_ptr().cast()) }
        .map_err(|e| PyValueError::new_err(format!("`{name}`: not a readable Arrow stream: {e}")))?;
    let schema = reader.schema();
    let file = File::create(path).map_err(|e| PyOSError::new_err(format!("{}: {e}", path.display())))?;
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
        let reader: Box<dyn RecordBatchReader + Send> =
            Box::new(RecordBatchIterator::new(batches.into_iter().map(Ok), schema));
        // The capsule's pointer is the stream itself (the value is the first
        // field of pyo3's capsule contents), as the interface wants.
        PyCapsule::new_with_value(py, SendStream(FFI_ArrowArrayStream::new(reader)), STREAM)
    }
}
