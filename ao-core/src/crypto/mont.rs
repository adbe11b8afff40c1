//! Montgomery arithmetic for the RSA public operation `s^e mod n`.
//!
//! Verification only handles public data, so this needs no constant-time care; it is written
//! for speed on 64-bit limbs (CIOS multiplication, u128 products). A 4096-bit verification
//! with `e = 65537` is 19 Montgomery multiplications.

use ::rsa::BigUint;

/// A modulus prepared for Montgomery multiplication.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Modulus {
    /// Little-endian limbs of `n`.
    n: Vec<u64>,
    /// `-n^-1 mod 2^64`.
    n0: u64,
    /// `R^2 mod n` with `R = 2^(64·limbs)`, little-endian limbs.
    r2: Vec<u64>,
}

fn to_limbs(x: &BigUint, len: usize) -> Vec<u64> {
    let bytes = x.to_bytes_le();
    let mut out = vec![0u64; len];
    for (i, chunk) in bytes.chunks(8).enumerate().take(len) {
        let mut a = [0u8; 8];
        a[..chunk.len()].copy_from_slice(chunk);
        out[i] = u64::from_le_bytes(a);
    }
    out
}

impl Modulus {
    /// Prepares an odd modulus.
    pub(crate) fn new(n: &BigUint) -> Option<Self> {
        let limbs = n.bits().div_ceil(64);
        let n_limbs = to_limbs(n, limbs);
        let n_low = *n_limbs.first()?;
        if n_low & 1 == 0 {
            return None;
        }
        // Newton iteration for n^-1 mod 2^64.
        let mut inv: u64 = 1;
        for _ in 0..6 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(n_low.wrapping_mul(inv)));
        }
        let r2 = (BigUint::from(1u32) << (128 * limbs)) % n;
        Some(Self {
            n: n_limbs,
            n0: inv.wrapping_neg(),
            r2: to_limbs(&r2, limbs),
        })
    }

    /// `a·b·R^-1 mod n` into `out`; `t` is scratch of `limbs + 1` words.
    ///
    /// FIOS: the multiplication by `b[i]` and the reduction by `m·n` run in one pass with two
    /// independent carry chains, which keeps the multiplier busy.
    fn mul(&self, out: &mut [u64], a: &[u64], b: &[u64], t: &mut [u64]) {
        let s = self.n.len();
        let n = &self.n[..s];
        let a = &a[..s];
        let t = &mut t[..s + 1];
        t.fill(0);
        for &bi in &b[..s] {
            let v1 = u128::from(t[0]) + u128::from(a[0]) * u128::from(bi);
            let lo1 = v1 as u64;
            let mut c1 = (v1 >> 64) as u64;
            let m = lo1.wrapping_mul(self.n0);
            let v2 = u128::from(lo1) + u128::from(m) * u128::from(n[0]);
            let mut c2 = (v2 >> 64) as u64;
            for j in 1..s {
                let v1 = u128::from(t[j]) + u128::from(a[j]) * u128::from(bi) + u128::from(c1);
                c1 = (v1 >> 64) as u64;
                let v2 = u128::from(v1 as u64) + u128::from(m) * u128::from(n[j]) + u128::from(c2);
                c2 = (v2 >> 64) as u64;
                t[j - 1] = v2 as u64;
            }
            let v = u128::from(t[s]) + u128::from(c1) + u128::from(c2);
            t[s - 1] = v as u64;
            t[s] = (v >> 64) as u64;
        }
        if t[s] != 0 || !less_than(&t[..s], n) {
            sub_in_place(&mut t[..s], n);
        }
        out.copy_from_slice(&t[..s]);
    }

    /// `base^e mod n` for `base < n`, big-endian bytes left-padded to `len`.
    pub(crate) fn pow(&self, base: &BigUint, e: u64, len: usize) -> Option<Vec<u8>> {
        let s = self.n.len();
        let mut t = vec![0u64; s + 1];
        let x = to_limbs(base, s);
        let mut xm = vec![0u64; s];
        self.mul(&mut xm, &x, &self.r2, &mut t);
        let mut acc = xm.clone();
        let mut tmp = vec![0u64; s];
        let top = 63 - e.leading_zeros();
        for bit in (0..top).rev() {
            self.mul(&mut tmp, &acc, &acc, &mut t);
            std::mem::swap(&mut acc, &mut tmp);
            if (e >> bit) & 1 == 1 {
                self.mul(&mut tmp, &acc, &xm, &mut t);
                std::mem::swap(&mut acc, &mut tmp);
            }
        }
        let mut one = vec![0u64; s];
        one[0] = 1;
        self.mul(&mut tmp, &acc, &one, &mut t);
        let mut be: Vec<u8> = tmp.iter().rev().flat_map(|l| l.to_be_bytes()).collect();
        let start = be.len().saturating_sub(len);
        if be[..start].iter().any(|&b| b != 0) {
            return None;
        }
        let mut out = vec![0u8; len.saturating_sub(be.len())];
        out.extend_from_slice(&be.split_off(start));
        Some(out)
    }
}

fn less_than(a: &[u64], b: &[u64]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

fn sub_in_place(a: &mut [u64], b: &[u64]) {
    let mut borrow = false;
    for (x, &y) in a.iter_mut().zip(b) {
        let (d1, b1) = x.overflowing_sub(y);
        let (d2, b2) = d1.overflowing_sub(u64::from(borrow));
        *x = d2;
        borrow = b1 || b2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_biguint_modpow() {
        // A 1024-bit odd modulus and a few bases.
        let n = (BigUint::from(1u32) << 1023usize) + BigUint::from(0x1234_5679u64);
        let m = Modulus::new(&n).unwrap();
        for seed in [2u64, 3, 0xdead_beef, u64::MAX] {
            let base = (BigUint::from(seed) << 700usize) % &n;
            let want = base.modpow(&BigUint::from(65537u32), &n).to_bytes_be();
            let got = m.pow(&base, 65537, 128).unwrap();
            assert_eq!(BigUint::from_bytes_be(&got).to_bytes_be(), want);
            assert_eq!(got.len(), 128);
        }
        let n = BigUint::from(0xffff_ffff_ffff_ffc5u64); // one limb
        let m = Modulus::new(&n).unwrap();
        let base = BigUint::from(123_456_789u64);
        assert_eq!(
            BigUint::from_bytes_be(&m.pow(&base, 3, 8).unwrap()),
            base.modpow(&BigUint::from(3u32), &n)
        );
    }
}
