//! NumPy `.npy` files through [`ndarray_npy`], with the checks a dataset needs on top: supported
//! dtypes (`f4`, `f8`, `u1`, `i4`, `i8`), shapes, lengths, label ranges.

use crate::{DataError, ImageShape, Split, Targets};
use ndarray::{Array2, ArrayD, Ix2};
use ndarray_npy::ReadNpyExt;
use ndarray_npy::npy::header::{Header, ParseHeaderError, ReadHeaderError};
use sgdlab_linalg::memory::Estimate;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dtype {
    F32,
    F64,
    U8,
    I32,
    I64,
}

impl Dtype {
    fn from_descr(d: &str) -> Option<Dtype> {
        Some(match d {
            "<f4" | ">f4" => Dtype::F32,
            "<f8" | ">f8" => Dtype::F64,
            "|u1" | "u1" | "B" => Dtype::U8,
            "<i4" | ">i4" => Dtype::I32,
            "<i8" | ">i8" => Dtype::I64,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Dtype::U8 => 1,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F64 | Dtype::I64 => 8,
        }
    }
}

enum NpyData {
    Float(ArrayD<f32>),
    Integer(ArrayD<i64>),
}

struct Npy {
    data: NpyData,
    shape: Vec<usize>,
    data_offset: usize,
    dtype: Dtype,
}

fn read(path: &Path) -> Result<Npy, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let mut cursor = std::io::Cursor::new(&bytes[..]);
    let header = match Header::from_reader(&mut cursor) {
        Ok(h) => h,
        Err(ReadHeaderError::Parse(ParseHeaderError::MagicString)) => {
            let shown: Vec<String> = bytes.iter().take(6).map(|b| format!("{b:02x}")).collect();
            return Err(DataError::format(
                path,
                0,
                format!("not a .npy file: starts with bytes [{}], not the magic \\x93NUMPY", shown.join(" ")),
            ));
        }
        Err(ReadHeaderError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(DataError::format(path, bytes.len() as u64, "truncated: the file ends inside the .npy header"));
        }
        Err(e) => return Err(DataError::format(path, 8, format!("bad .npy header: {e}"))),
    };
    let data_offset = cursor.position() as usize;
    let descr_raw = header.type_descriptor.to_string();
    let descr = descr_raw.trim_matches(|c| c == '\'' || c == '"');
    let Some(dtype) = Dtype::from_descr(descr) else {
        return Err(DataError::format(
            path,
            10,
            format!("dtype {descr_raw} is not supported (f32 <f4, f64 <f8, u8 |u1, i32 <i4, i64 <i8)"),
        ));
    };
    let shape = header.shape.clone();
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let Some(end) = count.and_then(|c| c.checked_mul(dtype.size())).and_then(|b| b.checked_add(data_offset)) else {
        return Err(DataError::format(path, 10, format!("shape {shape:?} overflows")));
    };
    if bytes.len() < end {
        return Err(DataError::format(
            path,
            bytes.len() as u64,
            format!(
                "truncated: the header declares shape {shape:?} of {descr}, whose data ends at byte {end}, but the file ends here"
            ),
        ));
    }
    if bytes.len() > end {
        return Err(DataError::format(
            path,
            end as u64,
            format!("{} unexpected bytes after the data of shape {shape:?}", bytes.len() - end),
        ));
    }
    // The values as read, plus their f32 or i64 conversion.
    let converted = match dtype {
        Dtype::F32 | Dtype::F64 => 4,
        Dtype::U8 | Dtype::I32 | Dtype::I64 => 8,
    };
    Estimate::new(format!("{}: an array of shape {shape:?}", path.display()))
        .array(&shape, dtype.size() + converted)
        .check()?;
    let err = |e: ndarray_npy::ReadNpyError| {
        DataError::format(path, data_offset as u64, format!("cannot read the data: {e}"))
    };
    let data = match dtype {
        Dtype::F32 => NpyData::Float(ArrayD::<f32>::read_npy(&bytes[..]).map_err(err)?),
        Dtype::F64 => NpyData::Float(ArrayD::<f64>::read_npy(&bytes[..]).map_err(err)?.mapv(|v| v as f32)),
        Dtype::U8 => NpyData::Integer(ArrayD::<u8>::read_npy(&bytes[..]).map_err(err)?.mapv(i64::from)),
        Dtype::I32 => NpyData::Integer(ArrayD::<i32>::read_npy(&bytes[..]).map_err(err)?.mapv(i64::from)),
        Dtype::I64 => NpyData::Integer(ArrayD::<i64>::read_npy(&bytes[..]).map_err(err)?),
    };
    Ok(Npy { data, shape, data_offset, dtype })
}

/// Features from a `.npy` file of any supported dtype, converted to f32: `[n, d]` as is, `[n, h,
/// w]` as images `1 x h x w`, `[n, c, h, w]` as images `c x h x w` (flattened row-major).
pub fn read_npy_features(path: impl AsRef<Path>) -> Result<(Array2<f32>, Option<ImageShape>), DataError> {
    let path = path.as_ref();
    let npy = read(path)?;
    let x = match npy.data {
        NpyData::Float(x) => x,
        NpyData::Integer(x) => x.mapv(|v| v as f32),
    };
    let s = &npy.shape;
    let image = match s.len() {
        2 => None,
        3 => Some(ImageShape { channels: 1, height: s[1], width: s[2] }),
        4 => Some(ImageShape { channels: s[1], height: s[2], width: s[3] }),
        k => {
            return Err(DataError::file(
                path,
                format!("features must be [n, d], [n, h, w] or [n, c, h, w]; this array has {k} dimensions {s:?}"),
            ));
        }
    };
    let d: usize = s[1..].iter().product();
    let x = x
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((s[0], d))
        .map_err(|e| DataError::file(path, e.to_string()))?
        .into_dimensionality::<Ix2>()
        .map_err(|e| DataError::file(path, e.to_string()))?;
    if let Some((k, v)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(DataError::format(
            path,
            (npy.data_offset + k * npy.dtype.size()) as u64,
            format!("feature {} of example {} is {v}", k % d.max(1), k / d.max(1)),
        ));
    }
    Ok((x, image))
}

/// Targets from a `.npy` file: a 1-D integer array (u8, i32, i64) gives class labels, each in
/// `0..num_classes` (`num_classes` = the given count, or the largest label + 1 when `None`); a
/// 1-D or 2-D float array gives `[n, k]` regression targets (`k = 1` for 1-D).
pub fn read_npy_targets(path: impl AsRef<Path>, num_classes: Option<usize>) -> Result<Targets, DataError> {
    let path = path.as_ref();
    let npy = read(path)?;
    let s = npy.shape.clone();
    match npy.data {
        NpyData::Integer(y) => {
            if s.len() != 1 {
                return Err(DataError::file(
                    path,
                    format!("integer labels must be a 1-D array [n]; this one has shape {s:?}"),
                ));
            }
            let y: Vec<i64> = y.iter().copied().collect();
            let max_allowed = num_classes.map_or(i64::from(u32::MAX), |c| c as i64 - 1);
            if let Some((i, &l)) = y.iter().enumerate().find(|(_, l)| **l < 0 || **l > max_allowed) {
                let why = match num_classes {
                    Some(c) => format!("is not in 0..{c}"),
                    None => "is not a class label (0..2^32)".to_string(),
                };
                return Err(DataError::format(
                    path,
                    (npy.data_offset + i * npy.dtype.size()) as u64,
                    format!("label {l} of example {i} {why}"),
                ));
            }
            let labels: Vec<u32> = y.iter().map(|&l| l as u32).collect();
            let num_classes = match num_classes {
                Some(c) => c,
                None => labels.iter().max().map_or(0, |&m| m as usize + 1),
            };
            Ok(Targets::Classes { labels, num_classes })
        }
        NpyData::Float(y) => {
            if num_classes.is_some() {
                return Err(DataError::file(
                    path,
                    format!("a class count was given but the targets are {:?} floats, not integer labels", npy.dtype),
                ));
            }
            let y = match s.len() {
                1 => y.into_shape_with_order((s[0], 1)).map_err(|e| DataError::file(path, e.to_string()))?,
                2 => y.into_dimensionality::<Ix2>().map_err(|e| DataError::file(path, e.to_string()))?,
                _ => {
                    return Err(DataError::file(
                        path,
                        format!("regression targets must be [n] or [n, k]; shape is {s:?}"),
                    ));
                }
            };
            let y = y.as_standard_layout().into_owned();
            let k = y.ncols().max(1);
            if let Some((i, v)) = y.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(DataError::format(
                    path,
                    (npy.data_offset + i * npy.dtype.size()) as u64,
                    format!("target {} of example {} is {v}", i % k, i / k),
                ));
            }
            Ok(Targets::Regression(y))
        }
    }
}

/// A features file and a targets file as one split called `name`; errors if their lengths
/// differ. `num_classes` as in [`read_npy_targets`].
pub fn load_npy_pair(
    name: &str,
    features: impl AsRef<Path>,
    targets: impl AsRef<Path>,
    num_classes: Option<usize>,
) -> Result<(Split, Option<ImageShape>), DataError> {
    let (x, image) = read_npy_features(features.as_ref())?;
    let y = read_npy_targets(targets.as_ref(), num_classes)?;
    if y.len() != x.nrows() {
        return Err(DataError::file(
            targets.as_ref(),
            format!("has {} targets but {} has {} examples", y.len(), features.as_ref().display(), x.nrows()),
        ));
    }
    Ok((Split::new(name, x, y)?, image))
}
