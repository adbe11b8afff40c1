//! Byte-level rewriting of core wasm modules, shared by fuel metering (`meter.rs`) and memory64
//! narrowing (`narrow.rs`): both copy the original bytes around what they add, so neither
//! needs an encoder.

use wasmparser::{
    BinaryReader, BinaryReaderError, CompositeInnerType, FunctionBody, ImportSectionReader,
    MemorySectionReader, TableSectionReader, TypeRef, TypeSectionReader, WasmFeatures,
};

pub(crate) const SECTION_TYPE: u8 = 1;
pub(crate) const SECTION_IMPORT: u8 = 2;
pub(crate) const SECTION_FUNCTION: u8 = 3;
pub(crate) const SECTION_TABLE: u8 = 4;
pub(crate) const SECTION_MEMORY: u8 = 5;
pub(crate) const SECTION_GLOBAL: u8 = 6;
pub(crate) const SECTION_EXPORT: u8 = 7;
pub(crate) const SECTION_CODE: u8 = 10;

/// wasmparser's (and so wasmtime's) limit on a module's globals, and on its exports.
const MAX_GLOBALS_OR_EXPORTS: u32 = 1_000_000;

fn text(e: BinaryReaderError) -> String {
    e.to_string()
}

pub(crate) fn reader(bytes: &[u8], offset: usize) -> BinaryReader<'_> {
    BinaryReader::new_features(bytes, offset, WasmFeatures::all())
}

pub(crate) fn leb_u64(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

pub(crate) fn leb_i64(mut v: i64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        let done = (v == 0 && b & 0x40 == 0) || (v == -1 && b & 0x40 != 0);
        out.push(if done { b } else { b | 0x80 });
        if done {
            return;
        }
    }
}

pub(crate) fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    leb_u64(body.len() as u64, out);
    out.extend_from_slice(body);
}

/// One section of the module: its id, and the offset and bytes of its contents.
pub(crate) struct Section<'a> {
    pub(crate) id: u8,
    pub(crate) offset: usize,
    pub(crate) bytes: &'a [u8],
}

pub(crate) fn sections(module: &[u8]) -> Result<Vec<Section<'_>>, String> {
    const HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
    if module.get(..8) != Some(&HEADER[..]) {
        return Err("not a core wasm module (version 1)".into());
    }
    let mut r = reader(&module[8..], 8);
    let mut out = Vec::new();
    while !r.eof() {
        let id = r.read_u8().map_err(text)?;
        let len = r.read_var_u32().map_err(text)? as usize;
        let offset = r.original_position();
        let bytes = r.read_bytes(len).map_err(text)?;
        out.push(Section { id, offset, bytes });
    }
    Ok(out)
}

/// What the rewrite needs to know about the module.
#[derive(Default)]
pub(crate) struct Shape {
    /// Parameter counts of the function types, by type index.
    pub(crate) params: Vec<u32>,
    /// Type index of each defined function.
    pub(crate) func_types: Vec<u32>,
    /// Whether each memory (imports first) has 64-bit addresses.
    pub(crate) memory64: Vec<bool>,
    /// Whether each table (imports first) has 64-bit indices.
    pub(crate) table64: Vec<bool>,
    pub(crate) globals: u32,
    /// Imported functions: the index of defined function `i` is `imported_funcs + i`.
    pub(crate) imported_funcs: u32,
}

pub(crate) fn shape(sections: &[Section<'_>]) -> Result<Shape, String> {
    let mut s = Shape::default();
    for sec in sections {
        let r = reader(sec.bytes, sec.offset);
        match sec.id {
            SECTION_TYPE => {
                for group in TypeSectionReader::new(r).map_err(text)? {
                    for ty in group.map_err(text)?.into_types() {
                        s.params.push(match &ty.composite_type.inner {
                            CompositeInnerType::Func(f) => f.params().len() as u32,
                            // Not a function type: no function body refers to it.
                            _ => 0,
                        });
                    }
                }
            }
            SECTION_IMPORT => {
                for import in ImportSectionReader::new(r).map_err(text)?.into_imports() {
                    match import.map_err(text)?.ty {
                        TypeRef::Global(_) => s.globals += 1,
                        TypeRef::Func(_) | TypeRef::FuncExact(_) => s.imported_funcs += 1,
                        TypeRef::Memory(m) => s.memory64.push(m.memory64),
                        TypeRef::Table(t) => s.table64.push(t.table64),
                        _ => {}
                    }
                }
            }
            SECTION_FUNCTION => {
                let mut r = r;
                let n = r.read_var_u32().map_err(text)?;
                for _ in 0..n {
                    s.func_types.push(r.read_var_u32().map_err(text)?);
                }
            }
            SECTION_TABLE => {
                for t in TableSectionReader::new(r).map_err(text)? {
                    s.table64.push(t.map_err(text)?.ty.table64);
                }
            }
            SECTION_MEMORY => {
                for m in MemorySectionReader::new(r).map_err(text)? {
                    s.memory64.push(m.map_err(text)?.memory64);
                }
            }
            SECTION_GLOBAL => {
                let mut r = r;
                s.globals += r.read_var_u32().map_err(text)?;
            }
            _ => {}
        }
    }
    Ok(s)
}

/// The position of a known section in the order the binary format requires (custom sections,
/// id 0, may appear anywhere and are never used for placement).
pub(crate) fn section_rank(id: u8) -> u8 {
    match id {
        // type, import, function, table, memory
        1..=5 => id,
        // tag (13) sits between memory and global
        13 => 6,
        // global, export, start, element
        6..=9 => id + 1,
        // data count (12) sits between element and code
        12 => 11,
        // code, data
        10 | 11 => id + 2,
        _ => u8::MAX,
    }
}

/// Writes the module back with one global appended to its globals (`global`: its type,
/// mutability and init expression, encoded) and exported as `name`, creating the global and
/// export sections where it has none; `rest` writes every other section. The global's index
/// is `shape.globals`. `err` turns a reason into the caller's error.
pub(crate) fn with_exported_global<E>(
    module: &[u8],
    sections: &[Section<'_>],
    shape: &Shape,
    global: &[u8],
    name: &str,
    err: impl Fn(String) -> E,
    mut rest: impl FnMut(&Section<'_>, &mut Vec<u8>) -> Result<(), E>,
) -> Result<Vec<u8>, E> {
    let index = shape.globals;
    let mut out = module[..8].to_vec();
    let (mut have_globals, mut have_exports) = (false, false);
    for sec in sections {
        // The global and export sections come after the memory/tag sections and before the
        // start/element/code sections: add them where they are missing.
        if !have_globals && sec.id != 0 && section_rank(sec.id) > section_rank(SECTION_GLOBAL) {
            section(
                SECTION_GLOBAL,
                &with_global(&[0], global).map_err(&err)?,
                &mut out,
            );
            have_globals = true;
        }
        if !have_exports && sec.id != 0 && section_rank(sec.id) > section_rank(SECTION_EXPORT) {
            section(
                SECTION_EXPORT,
                &with_global_export(&[0], name, index).map_err(&err)?,
                &mut out,
            );
            have_exports = true;
        }
        match sec.id {
            SECTION_GLOBAL => {
                section(
                    SECTION_GLOBAL,
                    &with_global(sec.bytes, global).map_err(&err)?,
                    &mut out,
                );
                have_globals = true;
            }
            SECTION_EXPORT => {
                section(
                    SECTION_EXPORT,
                    &with_global_export(sec.bytes, name, index).map_err(&err)?,
                    &mut out,
                );
                have_exports = true;
            }
            _ => rest(sec, &mut out)?,
        }
    }
    if !have_globals {
        section(
            SECTION_GLOBAL,
            &with_global(&[0], global).map_err(&err)?,
            &mut out,
        );
    }
    if !have_exports {
        section(
            SECTION_EXPORT,
            &with_global_export(&[0], name, index).map_err(&err)?,
            &mut out,
        );
    }
    Ok(out)
}

/// A global section's contents with `global` (encoded) appended.
fn with_global(contents: &[u8], global: &[u8]) -> Result<Vec<u8>, String> {
    let mut r = reader(contents, 0);
    let n = r.read_var_u32().map_err(text)?;
    if n >= MAX_GLOBALS_OR_EXPORTS {
        return Err("the rewrite would exceed the limit on globals".into());
    }
    let mut b = Vec::with_capacity(contents.len() + global.len() + 4);
    leb_u64(u64::from(n) + 1, &mut b);
    b.extend_from_slice(&contents[r.original_position()..]);
    b.extend_from_slice(global);
    Ok(b)
}

/// An export section's contents with an export of global `index` named `name` appended.
fn with_global_export(contents: &[u8], name: &str, index: u32) -> Result<Vec<u8>, String> {
    let mut r = reader(contents, 0);
    let n = r.read_var_u32().map_err(text)?;
    if n >= MAX_GLOBALS_OR_EXPORTS {
        return Err("the rewrite would exceed the limit on exports".into());
    }
    let mut b = Vec::with_capacity(contents.len() + name.len() + 8);
    leb_u64(u64::from(n) + 1, &mut b);
    b.extend_from_slice(&contents[r.original_position()..]);
    leb_u64(name.len() as u64, &mut b);
    b.extend_from_slice(name.as_bytes());
    b.push(0x03);
    leb_u64(u64::from(index), &mut b);
    Ok(b)
}

/// Rewrites every function body of the code section with `body(bytes, offset, params)`.
pub(crate) fn with_bodies<E>(
    sec: &Section<'_>,
    shape: &Shape,
    err: impl Fn(String) -> E,
    mut body: impl FnMut(&[u8], usize, u32) -> Result<Vec<u8>, E>,
) -> Result<Vec<u8>, E> {
    let mut r = reader(sec.bytes, sec.offset);
    let n = r.read_var_u32().map_err(|e| err(text(e)))?;
    if n as usize != shape.func_types.len() {
        return Err(err("function and code sections disagree".into()));
    }
    let mut out = Vec::with_capacity(sec.bytes.len() + sec.bytes.len() / 8);
    leb_u64(u64::from(n), &mut out);
    for &ty in &shape.func_types {
        let len = r.read_var_u32().map_err(|e| err(text(e)))? as usize;
        let start = r.original_position();
        let bytes = r.read_bytes(len).map_err(|e| err(text(e)))?;
        let params = *shape
            .params
            .get(ty as usize)
            .ok_or_else(|| err("no such function type".into()))?;
        let rewritten = body(bytes, start, params)?;
        leb_u64(rewritten.len() as u64, &mut out);
        out.extend_from_slice(&rewritten);
    }
    Ok(out)
}

/// A function body's local declarations.
pub(crate) struct Locals<'a> {
    /// The number of declaration groups.
    pub(crate) groups: u32,
    /// The groups' bytes, as they are.
    pub(crate) declarations: &'a [u8],
    /// Parameters plus declared locals: the index a local appended after them gets.
    pub(crate) next: u64,
    /// Where the operators start, relative to the body.
    pub(crate) ops_start: usize,
}

impl Locals<'_> {
    /// Writes the declarations with `extra_groups` groups (`extra`, encoded) appended.
    pub(crate) fn write_with(&self, extra_groups: u32, extra: &[u8], out: &mut Vec<u8>) {
        leb_u64(u64::from(self.groups) + u64::from(extra_groups), out);
        out.extend_from_slice(self.declarations);
        out.extend_from_slice(extra);
    }
}

/// Reads the local declarations of a function body (its `bytes`, at `offset` in the module).
pub(crate) fn locals(bytes: &[u8], offset: usize, params: u32) -> Result<Locals<'_>, String> {
    let body = FunctionBody::new(reader(bytes, offset));
    let mut locals = body.get_locals_reader().map_err(text)?;
    let groups = locals.get_count();
    let mut next = u64::from(params);
    for _ in 0..groups {
        let (count, _) = locals.read().map_err(text)?;
        next += u64::from(count);
    }
    let ops_start = locals.original_position() - offset;
    let mut r = reader(bytes, offset);
    r.read_var_u32().map_err(text)?;
    let declarations = &bytes[r.original_position() - offset..ops_start];
    Ok(Locals {
        groups,
        declarations,
        next,
        ops_start,
    })
}
