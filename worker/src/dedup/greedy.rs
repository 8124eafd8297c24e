//! Which documents a dedup removes, given its verified pairs: greedily, in
//! keep order. The documents are visited best first; one is removed when
//! a document already kept is similar to it (that one, the best such, is
//! its representative), and kept otherwise.
//!
//! Similarity is not transitive: A ≈ B and B ≈ C say nothing of A and C.
//! Joining pairs into connected components (union-find) and keeping one
//! document per component removes C for A's sake however far apart they
//! are, and a long chain of small edits loses every link but one. Here a
//! document is removed only for one it is similar to that stays, so every
//! removal is justified by a verified pair, and no verified pair is left
//! with both documents kept.

use super::union_find::UnionFind;

/// For each of `n` documents, its representative (`None` when it is
/// kept). `near` are the similar pairs; `same` are pairs whose shingle
/// sets are equal (exact duplicates, or similarity 1), which is
/// transitive, so each such group acts as one document: the first of it
/// kept, the rest removed for it, and a near pair of any member is one of
/// every member. `rank[d]` orders the documents, best (kept first)
/// lowest, and must be a permutation of `0..n`.
pub fn representatives(
    n: usize,
    near: &[(u32, u32)],
    same: &[(u32, u32)],
    rank: &[u32],
) -> Vec<Option<u32>> {
    assert_eq!(rank.len(), n, "a rank per document");
    let mut groups = UnionFind::new(n);
    for &(a, b) in same {
        groups.union(a, b);
    }
    let group: Vec<u32> = (0..n as u32).map(|d| groups.find(d)).collect();
    // Neighbouring groups in compressed rows: offsets by degree, then fill.
    let mut start = vec![0u32; n + 1];
    for &(a, b) in near {
        start[group[a as usize] as usize + 1] += 1;
        start[group[b as usize] as usize + 1] += 1;
    }
    for i in 0..n {
        start[i + 1] += start[i];
    }
    let mut next = start.clone();
    let mut neighbours = vec![0u32; start[n] as usize];
    for &(a, b) in near {
        let (ga, gb) = (group[a as usize], group[b as usize]);
        neighbours[next[ga as usize] as usize] = gb;
        next[ga as usize] += 1;
        neighbours[next[gb as usize] as usize] = ga;
        next[gb as usize] += 1;
    }
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_unstable_by_key(|&d| rank[d as usize]);
    // The kept document of each group, once there is one.
    let mut kept: Vec<Option<u32>> = vec![None; n];
    let mut rep: Vec<Option<u32>> = vec![None; n];
    for d in order {
        let g = group[d as usize] as usize;
        if let Some(k) = kept[g] {
            rep[d as usize] = Some(k);
            continue;
        }
        let around = &neighbours[start[g] as usize..start[g + 1] as usize];
        let best = around
            .iter()
            .filter_map(|&h| kept[h as usize])
            .min_by_key(|&k| rank[k as usize]);
        match best {
            Some(k) => rep[d as usize] = Some(k),
            None => kept[g] = Some(d),
        }
    }
    rep
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_chain_keeps_every_other_link() {
        // 0 ≈ 1 ≈ 2 ≈ 3, best first: 1 and 3 go, 0 and 2 stay.
        let rep = representatives(4, &[(0, 1), (1, 2), (2, 3)], &[], &[0, 1, 2, 3]);
        assert_eq!(rep, [None, Some(0), None, Some(2)]);
        // A star: everything goes for its centre, the best.
        let rep = representatives(4, &[(2, 0), (2, 1), (2, 3)], &[], &[1, 2, 0, 3]);
        assert_eq!(rep, [Some(2), Some(2), None, Some(2)]);
        // Exact copies 0 = 1 = 2 joined to their first, 1 the best: all
        // go for 1, and so does 3, near 0 only.
        let rep = representatives(4, &[(0, 3)], &[(0, 1), (0, 2)], &[2, 0, 3, 1]);
        assert_eq!(rep, [Some(1), None, Some(1), Some(1)]);
    }

    proptest! {
        #[test]
        fn removals_are_justified_and_no_pair_is_left_whole(
            n in 1usize..40,
            raw in proptest::collection::vec((0u32..40, 0u32..40), 0..120),
            raw_same in proptest::collection::vec((0u32..40, 0u32..40), 0..12),
            seed in any::<u64>(),
        ) {
            let pairs = |raw: Vec<(u32, u32)>| -> Vec<(u32, u32)> {
                raw.into_iter()
                    .map(|(a, b)| (a % n as u32, b % n as u32))
                    .filter(|(a, b)| a != b)
                    .collect()
            };
            let (near, same) = (pairs(raw), pairs(raw_same));
            // The similarity the pairs imply: equal sets form classes, and
            // a near pair holds for every member of both classes.
            let mut classes = UnionFind::new(n);
            for &(a, b) in &same {
                classes.union(a, b);
            }
            let class: Vec<u32> = (0..n as u32).map(|d| classes.find(d)).collect();
            let edges: Vec<(u32, u32)> = (0..n as u32)
                .flat_map(|a| (0..n as u32).map(move |b| (a, b)))
                .filter(|&(a, b)| {
                    a != b
                        && (class[a as usize] == class[b as usize]
                            || near.iter().any(|&(x, y)| {
                                let (cx, cy) = (class[x as usize], class[y as usize]);
                                (cx, cy) == (class[a as usize], class[b as usize])
                                    || (cy, cx) == (class[a as usize], class[b as usize])
                            }))
                })
                .collect();
            // A permutation from the seed.
            let mut rank: Vec<u32> = (0..n as u32).collect();
            rank.sort_by_key(|&d| (u64::from(d) + 1).wrapping_mul(seed | 1).rotate_left(17));
            let rank: Vec<u32> = {
                let mut r = vec![0u32; n];
                for (i, &d) in rank.iter().enumerate() {
                    r[d as usize] = i as u32;
                }
                r
            };
            let rep = representatives(n, &near, &same, &rank);
            let joined = |a: u32, b: u32| edges.iter().any(|&(x, y)| (x, y) == (a, b) || (x, y) == (b, a));
            for d in 0..n as u32 {
                if let Some(r) = rep[d as usize] {
                    // Removed for a kept, better document it is similar to.
                    prop_assert!(joined(d, r));
                    prop_assert!(rep[r as usize].is_none());
                    prop_assert!(rank[r as usize] < rank[d as usize]);
                }
            }
            for &(a, b) in &edges {
                prop_assert!(rep[a as usize].is_some() || rep[b as usize].is_some(), "{a}-{b} both kept");
            }
            // The best document of all is always kept.
            let best = (0..n).min_by_key(|&d| rank[d]).unwrap();
            prop_assert!(rep[best].is_none());
        }
    }
}
