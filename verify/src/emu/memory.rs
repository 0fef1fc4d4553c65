//! The memory an emulated call may touch: regions the caller registers
//! (inputs read-only, outputs writable), the emulator's own stack, and the
//! code. Every access is checked against them before it happens, so an
//! access outside them is a typed error, never a read of foreign memory.

use std::cell::Cell;
use std::fmt;

/// What a region allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    ReadWrite,
}

/// A range of host memory an emulated call may touch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    pub name: String,
    pub start: u64,
    pub len: u64,
    pub access: Access,
}

impl Region {
    /// A read-only region over `bytes`.
    pub fn read<T>(name: &str, bytes: &[T]) -> Region {
        Region {
            name: name.into(),
            start: bytes.as_ptr() as u64,
            len: std::mem::size_of_val(bytes) as u64,
            access: Access::Read,
        }
    }

    /// A writable region over `bytes`.
    pub fn write<T>(name: &str, bytes: &mut [T]) -> Region {
        Region {
            name: name.into(),
            start: bytes.as_mut_ptr() as u64,
            len: std::mem::size_of_val(bytes) as u64,
            access: Access::ReadWrite,
        }
    }

    /// A read-only region over one value (a kernel's constants, a tile
    /// configuration image).
    pub fn read_value<T>(name: &str, value: &T) -> Region {
        Region {
            name: name.into(),
            start: value as *const T as u64,
            len: std::mem::size_of::<T>() as u64,
            access: Access::Read,
        }
    }

    fn end(&self) -> u64 {
        self.start + self.len
    }

    fn contains(&self, addr: u64, size: u64) -> bool {
        addr >= self.start && addr.checked_add(size).is_some_and(|end| end <= self.end())
    }

    /// How far `addr` lies from the region (0 inside it).
    fn distance(&self, addr: u64) -> u64 {
        if addr < self.start {
            self.start - addr
        } else {
            addr.saturating_sub(self.end().saturating_sub(1))
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rw = if self.access == Access::ReadWrite { "rw" } else { "r" };
        write!(f, "{} [{:#x}, {:#x}) {rw}", self.name, self.start, self.end())
    }
}

/// The registered regions, in registration order.
#[derive(Clone, Debug, Default)]
pub(super) struct Memory {
    pub regions: Vec<Region>,
    /// Per region, bytes read and written so far.
    pub touched: Vec<Cell<(u64, u64)>>,
}

/// Why an access was refused (the emulator adds the instruction).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub addr: u64,
    pub size: u64,
    pub write: bool,
    /// The nearest region, described, or "no region registered".
    pub nearest: String,
}

impl Memory {
    fn check(&self, addr: u64, size: u64, write: bool) -> Result<(), Refused> {
        let fits = |r: &Region| r.contains(addr, size) && (!write || r.access == Access::ReadWrite);
        if let Some(i) = self.regions.iter().position(fits) {
            if let Some(t) = self.touched.get(i) {
                let (r, w) = t.get();
                t.set(if write { (r, w + size) } else { (r + size, w) });
            }
            return Ok(());
        }
        let nearest = self.regions.iter().min_by_key(|r| r.distance(addr)).map_or_else(
            || "no region registered".to_string(),
            |r| {
                let inside = r.contains(addr, size);
                let how = if inside {
                    "inside but read-only".to_string()
                } else {
                    format!("{} bytes away", r.distance(addr))
                };
                format!("{r} ({how})")
            },
        );
        Err(Refused { addr, size, write, nearest })
    }

    /// Copies `out.len()` bytes from `addr` after checking them.
    pub fn read(&self, addr: u64, out: &mut [u8]) -> Result<(), Refused> {
        if out.is_empty() {
            return Ok(());
        }
        self.check(addr, out.len() as u64, false)?;
        // SAFETY: the range lies inside a region the caller registered as
        // readable host memory (Emulator::call's contract).
        unsafe { std::ptr::copy_nonoverlapping(addr as *const u8, out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    /// Writes `bytes` at `addr` after checking them.
    pub fn write(&self, addr: u64, bytes: &[u8]) -> Result<(), Refused> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.check(addr, bytes.len() as u64, true)?;
        // SAFETY: the range lies inside a region the caller registered as
        // writable host memory that nothing else accesses during the call.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, bytes.len()) };
        Ok(())
    }
}
