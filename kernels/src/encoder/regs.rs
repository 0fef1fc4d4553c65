//! Register classes as types, so an operand of the wrong kind cannot be
//! passed to an instruction (STYLE.md, habit 2). Each class checks its
//! range once, at construction; the encoders can then trust the number.

use super::EncodeError;

macro_rules! register_class {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $count:literal, [$($konst:ident = $n:literal),* $(,)?]) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u8);

        impl $name {
            /// How many registers of this class the ISA has.
            pub const COUNT: u8 = $count;
            $(pub const $konst: $name = $name($n);)*

            /// Checked constructor for register numbers computed at run time.
            pub fn new(number: u8) -> Result<Self, EncodeError> {
                if number < $count {
                    Ok($name(number))
                } else {
                    Err(EncodeError::RegisterOutOfRange { class: $kind, number, count: $count })
                }
            }

            /// The hardware register number (0-based).
            pub const fn number(self) -> u8 {
                self.0
            }

            /// Every register of the class, in numeric order.
            pub fn all() -> impl Iterator<Item = $name> {
                (0..$count).map($name)
            }
        }
    };
}

register_class!(
    /// A 64-bit general purpose register; numbers follow the x86 encoding
    /// (rax = 0, rcx = 1, ..., r15 = 15).
    Gpr, "gpr", 16,
    [RAX = 0, RCX = 1, RDX = 2, RBX = 3, RSP = 4, RBP = 5, RSI = 6, RDI = 7,
     R8 = 8, R9 = 9, R10 = 10, R11 = 11, R12 = 12, R13 = 13, R14 = 14, R15 = 15]
);

register_class!(
    /// An AMX tile register (palette 1 has 8, docs/AMX.md).
    Tmm, "tmm", 8,
    [TMM0 = 0, TMM1 = 1, TMM2 = 2, TMM3 = 3, TMM4 = 4, TMM5 = 5, TMM6 = 6, TMM7 = 7]
);

register_class!(
    /// A 512-bit vector register (EVEX reaches all 32).
    Zmm, "zmm", 32,
    [ZMM0 = 0, ZMM1 = 1, ZMM2 = 2, ZMM3 = 3, ZMM31 = 31]
);

register_class!(
    /// An AVX-512 opmask register. k0 as a write mask means "no mask".
    KReg, "k", 8,
    [K0 = 0, K1 = 1, K2 = 2, K3 = 3, K4 = 4, K5 = 5, K6 = 6, K7 = 7]
);

impl Gpr {
    /// Low three bits, the part that goes into ModRM/SIB.
    pub(crate) const fn low3(self) -> u8 {
        self.0 & 7
    }
    /// The REX/VEX/EVEX extension bit.
    pub(crate) const fn high(self) -> u8 {
        (self.0 >> 3) & 1
    }
}

impl std::fmt::Display for Gpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const NAMES: [&str; 16] = [
            "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14",
            "r15",
        ];
        f.write_str(NAMES[self.0 as usize])
    }
}

impl std::fmt::Display for Tmm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tmm{}", self.0)
    }
}

impl std::fmt::Display for Zmm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "zmm{}", self.0)
    }
}

impl std::fmt::Display for KReg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "k{}", self.0)
    }
}
