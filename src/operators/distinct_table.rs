//! The distinct values of one BIGINT argument for every group of a group aggregate, with a
//! bit per COUNT(DISTINCT) aggregate that has counted each (see `agg_columns::DistinctShare`,
//! which owns one of these per shared argument).
//!
//! One open-addressing table of (set, value) slots for all groups, not a hash map per group.
//! Why: Nexmark q16 counts distinct bidders and auctions per channel and day, and a batch
//! touches thousands of cold channels with a row or two each. With a map per group every such
//! row paid a cache miss on the map's header, one on its control bytes and one on its bucket
//! (about 250 ns a row at 20M events). Here a row's bucket is known from its hash alone, so
//! the buckets of a batch's rows are prefetched several rows ahead and their misses overlap.
//!
//! - **Buckets** are one cache line of five slots: five values, five sets, and five masks of
//!   six bits (the aggregates that counted the value; an empty slot has none). 12.8 bytes a
//!   slot, where a hash map of a value and a mask took 17.
//! - **Shards.** The table is split into [`SHARDS`] shards by the hash of the value alone,
//!   each grown on its own, so growing never holds two copies of all the state at once.
//! - **Sets, not groups.** A slot names its group's *set*. Resetting a group gives it a fresh
//!   set, so its old slots are never matched again without walking the table for them; they
//!   are garbage, dropped when garbage outweighs the live slots. The table is then rebuilt
//!   shard by shard, each group's set renumbered to its id (a slot keeps its shard, which
//!   its value alone decides).

use datafusion::common::HashMap;

/// Shards of a table (a power of two).
const SHARDS: usize = 64;
/// Buckets of a new shard (a power of two).
const FIRST_BUCKETS: usize = 4;
/// Slots of a bucket.
const SLOTS: usize = 5;
/// Bits of a slot's mask.
const MASK_WIDTH: u32 = 6;
/// Rows looked ahead when prefetching buckets.
const AHEAD: usize = 8;
/// Garbage slots tolerated before a rebuild, beyond as many as are live (few in tests, so
/// that they rebuild often).
#[cfg(not(test))]
const GARBAGE_SLACK: usize = 1 << 16;
#[cfg(test)]
const GARBAGE_SLACK: usize = 1 << 8;

/// Five slots in one cache line. Slots fill in order, so the first empty one ends a probe.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct Bucket {
    values: [i64; SLOTS],
    sets: [u32; SLOTS],
    /// Slot `j`'s mask in bits `6j..6j + 6` (bit `i` for aggregate `i`); 0 for an empty slot.
    masks: u32,
}

impl Bucket {
    fn mask(&self, slot: usize) -> u32 {
        (self.masks >> (MASK_WIDTH as usize * slot)) & ((1 << MASK_WIDTH) - 1)
    }

    fn add_mask(&mut self, slot: usize, mask: u32) {
        self.masks |= mask << (MASK_WIDTH as usize * slot);
    }

    /// The slots in use: (set, value, mask).
    fn used(&self) -> impl Iterator<Item = (u32, i64, u32)> + '_ {
        (0..SLOTS)
            .map(|j| (self.sets[j], self.values[j], self.mask(j)))
            .take_while(|(_, _, m)| *m != 0)
    }
}

#[derive(Debug)]
struct Shard {
    buckets: Vec<Bucket>,
    /// Slots in use, garbage included.
    used: usize,
    /// The most slots in use, per 1024 slots, before the shard grows.
    load: usize,
}

impl Shard {
    /// Shard `index` of a table. Shards fill alike (the hash spreads values evenly), so each
    /// grows at its own load, from 1/2 to 7/8 across the shards: otherwise all would double
    /// within a few batches of each other, and the whole table would sit half as full after.
    fn new(index: usize) -> Shard {
        Shard {
            buckets: vec![Bucket::default(); FIRST_BUCKETS],
            used: 0,
            load: 512 + 384 * index / (SHARDS - 1),
        }
    }

    /// Whether `used` slots in `buckets` buckets is more than this shard holds before growing.
    fn too_full(&self, used: usize, buckets: usize) -> bool {
        used * 1024 > buckets * SLOTS * self.load
    }

    /// Where `(set, value)` is, or the empty slot where it goes: (bucket, slot).
    fn find(&self, hash: u64, set: u32, value: i64) -> (usize, usize) {
        let last = self.buckets.len() - 1;
        let mut b = hash as usize & last;
        loop {
            let k = &self.buckets[b];
            for j in 0..SLOTS {
                if k.mask(j) == 0 || (k.values[j] == value && k.sets[j] == set) {
                    return (b, j);
                }
            }
            b = (b + 1) & last;
        }
    }

    /// Place a slot known to be absent.
    fn place(&mut self, set: u32, value: i64, mask: u32) {
        let (b, j) = self.find(slot_hash(set, value), set, value);
        let k = &mut self.buckets[b];
        k.values[j] = value;
        k.sets[j] = set;
        k.add_mask(j, mask);
        self.used += 1;
    }

    /// Refill with `slots`, in as many buckets as they need.
    fn refill(&mut self, slots: Vec<(u32, i64, u32)>) {
        let mut buckets = FIRST_BUCKETS;
        while self.too_full(slots.len() + 1, buckets) {
            buckets *= 2;
        }
        self.buckets = vec![Bucket::default(); buckets];
        self.used = 0;
        for (set, value, mask) in slots {
            self.place(set, value, mask);
        }
    }

    /// The slots in use: (set, value, mask).
    fn slots(&self) -> impl Iterator<Item = (u32, i64, u32)> + '_ {
        self.buckets.iter().flat_map(Bucket::used)
    }
}

fn fold(a: u64, b: u64) -> u64 {
    let m = (a as u128) * (b as u128);
    (m as u64) ^ ((m >> 64) as u64)
}

/// The shard of a value (the top bits of a hash of the value alone).
fn shard_of(value: i64) -> usize {
    (fold(value as u64 ^ 0x243f_6a88_85a3_08d3, 0x1319_8a2e_0370_7344)
        >> (64 - SHARDS.trailing_zeros())) as usize
}

/// The hash that places `(set, value)` in its shard.
fn slot_hash(set: u32, value: i64) -> u64 {
    fold(
        value as u64 ^ 0xa409_3822_299f_31d0,
        (u64::from(set) << 32 | u64::from(set)) ^ 0x082e_fa98_ec4e_6c89,
    )
}

/// Hint the CPU to load the cache line at `p` (a hint only: no memory is read or written).
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch never faults and reads nothing into the program, whatever the
        // address; SSE is part of the x86_64 baseline.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// One row to count: its group, its value, and the aggregates that count it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counted {
    pub group: u32,
    pub value: i64,
    pub mask: u32,
}

/// The table: slots for all groups, each group's set and slot count, and every aggregate's
/// distinct count per group.
#[derive(Debug)]
pub(crate) struct DistinctTable {
    /// Aggregates counted (bits of a mask).
    members: usize,
    shards: Vec<Shard>,
    /// Per group: its set.
    set_of: Vec<u32>,
    /// Per group: its live slots.
    held_by: Vec<u32>,
    /// Per group and aggregate (`group * members + aggregate`): the distinct count.
    counts: Vec<i64>,
    next_set: u32,
    live: usize,
    garbage: usize,
    /// Each row's shard and slot hash, reused from batch to batch.
    hashes: Vec<(usize, u64)>,
    #[cfg(test)]
    rebuilds: usize,
}

impl DistinctTable {
    /// Most aggregates one table counts.
    pub(crate) const MAX_MEMBERS: usize = MASK_WIDTH as usize;

    pub(crate) fn new(members: usize) -> DistinctTable {
        DistinctTable {
            members,
            shards: (0..SHARDS).map(Shard::new).collect(),
            set_of: vec![],
            held_by: vec![],
            counts: vec![],
            next_set: 0,
            live: 0,
            garbage: 0,
            hashes: vec![],
            #[cfg(test)]
            rebuilds: 0,
        }
    }

    /// Make room for `groups` groups in all (new groups start empty).
    pub(crate) fn grow(&mut self, groups: usize) {
        while self.set_of.len() < groups {
            let set = self.fresh_set();
            self.set_of.push(set);
        }
        self.held_by.resize(groups, 0);
        self.counts.resize(groups * self.members, 0);
    }

    fn fresh_set(&mut self) -> u32 {
        if self.next_set == u32::MAX {
            self.rebuild();
        }
        let set = self.next_set;
        self.next_set += 1;
        set
    }

    /// Aggregate `member`'s distinct count of `group`.
    pub(crate) fn count(&self, group: u32, member: usize) -> i64 {
        self.counts[group as usize * self.members + member]
    }

    /// Count each row for the aggregates in its mask that have not counted its value in its
    /// group yet.
    pub(crate) fn add(&mut self, rows: &[Counted]) {
        let mut hashes = std::mem::take(&mut self.hashes);
        hashes.clear();
        hashes.extend(rows.iter().map(|r| {
            (
                shard_of(r.value),
                slot_hash(self.set_of[r.group as usize], r.value),
            )
        }));
        for (i, r) in rows.iter().enumerate() {
            if let Some((shard, h)) = hashes.get(i + AHEAD) {
                let buckets = &self.shards[*shard].buckets;
                prefetch(
                    buckets
                        .as_ptr()
                        .wrapping_add(*h as usize & (buckets.len() - 1)),
                );
                let g = rows[i + AHEAD].group as usize;
                prefetch(self.counts.as_ptr().wrapping_add(g * self.members));
            }
            let (shard, h) = hashes[i];
            self.insert(shard, h, r);
        }
        self.hashes = hashes;
    }

    fn insert(&mut self, shard: usize, hash: u64, r: &Counted) {
        let g = r.group as usize;
        let set = self.set_of[g];
        let shard = &mut self.shards[shard];
        let (b, j) = shard.find(hash, set, r.value);
        let held = shard.buckets[b].mask(j);
        let new = if held == 0 {
            if shard.too_full(shard.used + 1, shard.buckets.len()) {
                // Grown to twice the buckets (the fewest that hold one more slot).
                let slots = shard.slots().collect();
                shard.buckets = vec![];
                shard.refill(slots);
            }
            shard.place(set, r.value, r.mask);
            self.live += 1;
            self.held_by[g] += 1;
            r.mask
        } else {
            let new = r.mask & !held;
            shard.buckets[b].add_mask(j, new);
            new
        };
        let mut bits = new;
        while bits != 0 {
            self.counts[g * self.members + bits.trailing_zeros() as usize] += 1;
            bits &= bits - 1;
        }
    }

    /// Empty these groups again.
    pub(crate) fn reset(&mut self, groups: &[u32]) {
        for g in groups {
            let g = *g as usize;
            // A fresh set first: running out of sets rebuilds the table, which must still
            // see this group's slots as live.
            let set = self.fresh_set();
            self.drop_slots(g);
            self.counts[g * self.members..(g + 1) * self.members].fill(0);
            self.set_of[g] = set;
        }
        self.maybe_rebuild();
    }

    /// Keep only these groups (ascending), renumbered `0..keep.len()`.
    pub(crate) fn retain(&mut self, keep: &[u32]) {
        let mut next = keep.iter().peekable();
        for g in 0..self.set_of.len() {
            if next.peek().is_some_and(|k| **k as usize == g) {
                next.next();
            } else {
                self.drop_slots(g);
            }
        }
        super::agg_columns::retain_at(&mut self.set_of, keep);
        super::agg_columns::retain_at(&mut self.held_by, keep);
        let members = self.members;
        let mut counts = Vec::with_capacity(keep.len() * members);
        for g in keep {
            let g = *g as usize;
            counts.extend_from_slice(&self.counts[g * members..(g + 1) * members]);
        }
        self.counts = counts;
        self.maybe_rebuild();
    }

    fn drop_slots(&mut self, g: usize) {
        let held = std::mem::take(&mut self.held_by[g]) as usize;
        self.live -= held;
        self.garbage += held;
    }

    fn maybe_rebuild(&mut self) {
        if self.garbage > self.live + GARBAGE_SLACK {
            self.rebuild();
        }
    }

    /// Drop the garbage, shard by shard, and renumber each group's set to the group's id.
    fn rebuild(&mut self) {
        #[cfg(test)]
        {
            self.rebuilds += 1;
        }
        let group_of: HashMap<u32, u32> = self
            .set_of
            .iter()
            .enumerate()
            .map(|(g, s)| (*s, g as u32))
            .collect();
        for shard in &mut self.shards {
            let live = shard
                .slots()
                .filter_map(|(s, v, m)| Some((*group_of.get(&s)?, v, m)))
                .collect();
            shard.refill(live);
        }
        for (g, s) in self.set_of.iter_mut().enumerate() {
            *s = g as u32;
        }
        self.next_set = self.set_of.len() as u32;
        self.garbage = 0;
    }

    /// The values aggregate `member` counted in each of groups `0..groups`, in group order
    /// (each group's count of them is [`Self::count`]).
    pub(crate) fn values(&self, groups: usize, member: usize) -> Vec<i64> {
        let group_of: HashMap<u32, u32> = self.set_of[..groups]
            .iter()
            .enumerate()
            .map(|(g, s)| (*s, g as u32))
            .collect();
        let mut at = Vec::with_capacity(groups + 1);
        let mut total = 0usize;
        for g in 0..groups {
            at.push(total);
            total += self.count(g as u32, member) as usize;
        }
        let mut values = vec![0i64; total];
        let bit = 1u32 << member;
        for (set, value, _) in self
            .shards
            .iter()
            .flat_map(|s| s.slots())
            .filter(|(_, _, m)| m & bit != 0)
        {
            if let Some(g) = group_of.get(&set) {
                let i = &mut at[*g as usize];
                values[*i] = value;
                *i += 1;
            }
        }
        values
    }

    /// Bytes held.
    pub(crate) fn size(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.buckets.capacity() * std::mem::size_of::<Bucket>())
            .sum::<usize>()
            + self.set_of.capacity() * 4
            + self.held_by.capacity() * 4
            + self.counts.capacity() * 8
            + self.hashes.capacity() * 16
    }

    /// Live slots.
    #[cfg(test)]
    fn live(&self) -> usize {
        self.live
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    /// Per group, per member: the values counted.
    type Model = Vec<Vec<BTreeSet<i64>>>;

    fn check(t: &DistinctTable, model: &Model, when: &str) {
        let members = t.members;
        for (g, sets) in model.iter().enumerate() {
            for (m, set) in sets.iter().enumerate() {
                assert_eq!(t.count(g as u32, m), set.len() as i64, "g{g} m{m} {when}");
            }
        }
        for m in 0..members {
            let values = t.values(model.len(), m);
            let mut at = 0;
            for (g, sets) in model.iter().enumerate() {
                let n = sets[m].len();
                let got: BTreeSet<i64> = values[at..at + n].iter().copied().collect();
                assert_eq!(got, sets[m], "values of g{g} m{m} {when}");
                at += n;
            }
        }
        let live: usize = model
            .iter()
            .map(|sets| {
                sets.iter()
                    .flatten()
                    .copied()
                    .collect::<BTreeSet<i64>>()
                    .len()
            })
            .sum();
        assert_eq!(t.live(), live, "live slots {when}");
    }

    /// Counts, values, resets and retains agree with a set per group and member, across
    /// shard growth and rebuilds that drop reset groups' garbage and renumber sets.
    #[test]
    fn table_matches_a_set_per_group() {
        let members = 3;
        let mut t = DistinctTable::new(members);
        let mut model: Model = vec![];
        let mut seed = 7u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..12 {
            let groups = 20 + round * 5;
            t.grow(groups);
            model.resize(groups, vec![BTreeSet::new(); members]);
            let mut rows = vec![];
            for _ in 0..30_000 {
                let group = (next() % groups as u64) as u32;
                // Few values in some groups (repeats), many in others.
                let spread = if group.is_multiple_of(3) { 50 } else { 100_000 };
                let value = (next() % spread) as i64 - 10;
                let mask = (next() % 8) as u32;
                if mask == 0 {
                    continue;
                }
                rows.push(Counted { group, value, mask });
            }
            t.add(&rows);
            for r in &rows {
                for (m, set) in model[r.group as usize].iter_mut().enumerate() {
                    if r.mask & (1 << m) != 0 {
                        set.insert(r.value);
                    }
                }
            }
            check(&t, &model, &format!("after adding in round {round}"));
            let reset: Vec<u32> = (0..groups as u32)
                .filter(|g| *g as usize % 4 == round % 4)
                .collect();
            t.reset(&reset);
            for g in &reset {
                model[*g as usize] = vec![BTreeSet::new(); members];
            }
            check(&t, &model, &format!("after a reset in round {round}"));
            if round % 3 == 2 {
                let keep: Vec<u32> = (0..groups as u32).filter(|g| g % 5 != 1).collect();
                t.retain(&keep);
                let kept: BTreeMap<u32, _> = keep
                    .iter()
                    .map(|g| (*g, model[*g as usize].clone()))
                    .collect();
                model = kept.into_values().collect();
                check(&t, &model, &format!("after a retain in round {round}"));
            }
        }
        assert!(t.garbage <= t.live + GARBAGE_SLACK);
        assert!(t.rebuilds >= 3, "{} rebuilds", t.rebuilds);
    }

    /// Sets run out: the table renumbers them and goes on.
    #[test]
    fn sets_are_renumbered_when_they_run_out() {
        let mut t = DistinctTable::new(1);
        t.grow(2);
        t.add(&[Counted {
            group: 1,
            value: 5,
            mask: 1,
        }]);
        t.next_set = u32::MAX - 1;
        t.reset(&[0]);
        t.reset(&[0]);
        assert_eq!(t.set_of, [2, 1]);
        assert_eq!(t.count(1, 0), 1);
        assert_eq!(t.values(2, 0), [5]);
        t.add(&[Counted {
            group: 1,
            value: 5,
            mask: 1,
        }]);
        assert_eq!(t.count(1, 0), 1);
    }
}
