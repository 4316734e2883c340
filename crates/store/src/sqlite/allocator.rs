//! SQLite's memory, taken from the process's Rust allocator instead of the C library's.
//!
//! SQLite allocates for every cursor, record and page-cache entry. Through glibc those
//! allocations took a tenth of the writer thread's time; through the global allocator
//! they cost what the rest of the process pays (mimalloc in the service's binary).

use std::alloc::Layout;
use std::ffi::{c_int, c_void};
use std::ptr::null_mut;

use rusqlite::ffi;

/// Each block starts with its size, which `free`, `realloc` and `xSize` need. Eight
/// bytes keep the memory handed to SQLite 8-byte aligned, as it requires.
const HEADER: usize = 8;

/// Routes SQLite's allocations through the global allocator, answering whether it did.
/// Must run before SQLite initialises (before the process opens its first connection);
/// later it changes nothing.
pub(super) fn install() -> bool {
    let methods = ffi::sqlite3_mem_methods {
        xMalloc: Some(malloc),
        xFree: Some(free),
        xRealloc: Some(realloc),
        xSize: Some(size),
        xRoundup: Some(roundup),
        xInit: Some(init),
        xShutdown: Some(shutdown),
        pAppData: null_mut(),
    };
    // SAFETY: SQLite copies the methods; sqlite3_config is allowed before initialisation
    // and returns SQLITE_MISUSE (changing nothing) after it.
    let status = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &methods as *const ffi::sqlite3_mem_methods) };
    status == ffi::SQLITE_OK
}

fn layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size.checked_add(HEADER)?, HEADER).ok()
}

/// The block that holds `pointer`, and the size stored in its header.
///
/// # Safety
/// `pointer` was returned by `malloc` or `realloc` below and not freed.
unsafe fn block_of(pointer: *mut c_void) -> (*mut u8, usize) {
    // SAFETY: the caller's promise: HEADER bytes before `pointer` hold its size.
    unsafe {
        let block = pointer.cast::<u8>().sub(HEADER);
        (block, block.cast::<usize>().read())
    }
}

unsafe extern "C" fn malloc(requested: c_int) -> *mut c_void {
    let Some(layout) = usize::try_from(requested).ok().and_then(layout) else {
        return null_mut();
    };
    // SAFETY: the layout is at least HEADER bytes long; the size is written inside it.
    unsafe {
        let block = std::alloc::alloc(layout);
        if block.is_null() {
            return null_mut();
        }
        block.cast::<usize>().write(layout.size() - HEADER);
        block.add(HEADER).cast()
    }
}

unsafe extern "C" fn free(pointer: *mut c_void) {
    if pointer.is_null() {
        return;
    }
    // SAFETY: SQLite frees only what this allocator gave it, once.
    unsafe {
        let (block, size) = block_of(pointer);
        std::alloc::dealloc(block, layout(size).expect("the size of a block allocated here"));
    }
}

unsafe extern "C" fn realloc(pointer: *mut c_void, requested: c_int) -> *mut c_void {
    // SQLite never reallocates a null pointer or to zero bytes (it frees or allocates).
    let Some(new_size) = usize::try_from(requested).ok().filter(|size| layout(*size).is_some()) else {
        return null_mut();
    };
    // SAFETY: `pointer` came from this allocator; realloc keeps the alignment, and the
    // new size is written in the header of the block it answers.
    unsafe {
        let (block, size) = block_of(pointer);
        let old = layout(size).expect("the size of a block allocated here");
        let block = std::alloc::realloc(block, old, new_size + HEADER);
        if block.is_null() {
            return null_mut();
        }
        block.cast::<usize>().write(new_size);
        block.add(HEADER).cast()
    }
}

unsafe extern "C" fn size(pointer: *mut c_void) -> c_int {
    if pointer.is_null() {
        return 0;
    }
    // SAFETY: SQLite asks only about live blocks of this allocator.
    let (_, size) = unsafe { block_of(pointer) };
    c_int::try_from(size).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn roundup(requested: c_int) -> c_int {
    requested.saturating_add(7) & !7
}

unsafe extern "C" fn init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn shutdown(_: *mut c_void) {}
