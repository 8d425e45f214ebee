//! The job matrix of a suite: how many jobs it has, and which fragments job `i` takes.
//!
//! The shapes and their indexing follow teuthology's `suite/matrix.py`, so that job `i`
//! here is job `i` there: a `%` directory is a [`Matrix::Product`] whose contiguous runs
//! move through every facet, a plain directory a [`Matrix::Sum`] that interleaves its
//! alternatives in proportion to their sizes, `+` a [`Matrix::Concat`], `$` a
//! [`Matrix::PickRandom`], and `--subset`/nested subsets [`Matrix::Cycle`] and
//! [`Matrix::Subset`]. Nothing here is built per job: [`Matrix::index`] computes one job's
//! picks on demand, so a suite of any size streams in constant memory.

use crate::pyrandom::PyRandom;

/// Matrix sizes and indexes. Sizes past `u64` are refused while the matrix is built.
pub type Count = u64;

/// One node of the matrix, named by its file or directory name (`item`).
#[derive(Debug, Clone)]
pub enum Matrix {
    /// A single YAML fragment.
    Base { item: String },
    /// A `%` directory: one pick from every facet, strides as teuthology sorts them.
    Product {
        item: String,
        facets: Vec<(Count, Matrix)>,
        size: Count,
        min_scan: Count,
    },
    /// A `+` directory: every fragment below it at once.
    Concat { item: String, parts: Vec<Matrix> },
    /// A `$` directory: one alternative drawn at random for each job.
    PickRandom { item: String, choices: Vec<Matrix> },
    /// A plain directory: its alternatives interleaved in proportion to their sizes.
    Sum {
        item: String,
        parts: Vec<Matrix>,
        size: Count,
        pseudo_size: u128,
        min_scan: Count,
    },
    /// A matrix run `times` over.
    Cycle { times: Count, inner: Box<Matrix> },
    /// Part `which` of `divisions` contiguous parts.
    Subset {
        inner: Box<Matrix>,
        divisions: Count,
        which: Count,
    },
}

/// The fragments one job takes, as a tree of names: teuthology's result of `index(i)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pick<'m> {
    /// A fragment file name.
    Leaf(&'m str),
    /// A directory name and what was picked inside it.
    Under(&'m str, Box<Pick<'m>>),
    /// Several picks taken together (a product or a concatenation): sorted, without
    /// repeats (teuthology's frozenset).
    All(Vec<Pick<'m>>),
}

/// The matrix could not be built or sized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatrixError {
    #[error("the suite's matrix is too large to count (more than 2^64 jobs)")]
    TooLarge,
    /// A part with no job (a nested subset of more parts than jobs) where teuthology
    /// would divide by zero.
    #[error(
        "`{item}` has no job to give (a nested subset of more parts than it has jobs); lower the number in its `%` file"
    )]
    NoJobs { item: String },
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Matrix {
    /// A `%` product of facets (at least one), strided as teuthology strides them:
    /// largest facet first (ties: the later one), so that the smallest facet varies
    /// fastest.
    pub fn product(item: String, facets: Vec<Matrix>) -> Result<Self, MatrixError> {
        assert!(!facets.is_empty(), "a product needs at least one facet");
        let min_scan_inner = facets.iter().map(Matrix::min_scan).max().unwrap_or(1);
        let mut order: Vec<(Count, usize, Matrix)> = facets
            .into_iter()
            .enumerate()
            .map(|(index, facet)| (facet.size(), index, facet))
            .collect();
        order.sort_by_key(|facet| std::cmp::Reverse((facet.0, facet.1)));
        let mut size: Count = 1;
        let mut strided = Vec::with_capacity(order.len());
        for (facet_size, _, facet) in order {
            strided.push((size, facet));
            size = size.checked_mul(facet_size).ok_or(MatrixError::TooLarge)?;
        }
        strided.reverse();
        let min_scan = if min_scan_inner + 1 > size {
            size
        } else {
            min_scan_inner + 1
        };
        Ok(Matrix::Product {
            item,
            facets: strided,
            size,
            min_scan,
        })
    }

    /// A plain directory's alternatives (at least one).
    pub fn sum(item: String, parts: Vec<Matrix>) -> Result<Self, MatrixError> {
        assert!(!parts.is_empty(), "a sum needs at least one part");
        let mut lcm: u128 = 1;
        let mut size: Count = 0;
        if let Some(empty) = parts.iter().find(|p| p.size() == 0) {
            return Err(MatrixError::NoJobs {
                item: empty.item().to_owned(),
            });
        }
        for part in &parts {
            let part_size = u128::from(part.size());
            lcm = lcm
                .checked_mul(part_size / gcd(lcm, part_size))
                .ok_or(MatrixError::TooLarge)?;
            size = size.checked_add(part.size()).ok_or(MatrixError::TooLarge)?;
        }
        let pseudo_size = lcm
            .checked_mul(parts.len() as u128)
            .ok_or(MatrixError::TooLarge)?;
        let mut widest = 0u128;
        for part in &parts {
            let scan = u128::from(part.min_scan())
                .checked_mul(pseudo_size / u128::from(part.size()))
                .ok_or(MatrixError::TooLarge)?;
            widest = widest.max(scan);
        }
        let min_scan = sum_count_upto(&parts, pseudo_size, widest).saturating_sub(1);
        let min_scan = Count::try_from(min_scan).map_err(|_| MatrixError::TooLarge)?;
        Ok(Matrix::Sum {
            item,
            parts,
            size,
            pseudo_size,
            min_scan,
        })
    }

    /// How many jobs the matrix holds.
    pub fn size(&self) -> Count {
        match self {
            Matrix::Base { .. } | Matrix::Concat { .. } | Matrix::PickRandom { .. } => 1,
            Matrix::Product { size, .. } | Matrix::Sum { size, .. } => *size,
            Matrix::Cycle { times, inner } => inner.size().saturating_mul(*times),
            Matrix::Subset {
                inner, divisions, ..
            } => inner.size() / divisions,
        }
    }

    /// The shortest run of consecutive jobs that shows every facet.
    pub fn min_scan(&self) -> Count {
        match self {
            Matrix::Base { .. } | Matrix::Concat { .. } | Matrix::PickRandom { .. } => 1,
            Matrix::Product { min_scan, .. } | Matrix::Sum { min_scan, .. } => *min_scan,
            Matrix::Cycle { inner, .. } | Matrix::Subset { inner, .. } => inner.min_scan(),
        }
    }

    /// Into how many good subsets of consecutive jobs the matrix can be cut.
    pub fn cyclicity(&self) -> Result<Count, MatrixError> {
        match self.min_scan() {
            0 => Err(MatrixError::NoJobs {
                item: self.item().to_owned(),
            }),
            scan => Ok(self.size() / scan),
        }
    }

    /// The file or directory name the matrix was built from.
    pub fn item(&self) -> &str {
        match self {
            Matrix::Base { item }
            | Matrix::Product { item, .. }
            | Matrix::Concat { item, .. }
            | Matrix::PickRandom { item, .. }
            | Matrix::Sum { item, .. } => item,
            Matrix::Cycle { inner, .. } | Matrix::Subset { inner, .. } => inner.item(),
        }
    }

    /// The picks of job `i`. `$` directories draw from `random`, in the order teuthology
    /// draws, which is why jobs must be indexed in order.
    pub fn index<'m>(&'m self, i: Count, random: &mut PyRandom) -> Result<Pick<'m>, MatrixError> {
        let empty = || MatrixError::NoJobs {
            item: self.item().to_owned(),
        };
        Ok(match self {
            Matrix::Base { item } => Pick::Leaf(item),
            Matrix::Product { item, facets, .. } => {
                let mut picks = Vec::with_capacity(facets.len());
                product_index(facets, i, random, &mut picks)?;
                Pick::Under(item, Box::new(Pick::all(picks)))
            }
            Matrix::Concat { item, parts } => {
                let mut picks = Vec::new();
                for part in parts {
                    for j in 0..part.size() {
                        picks.push(part.index(j, random)?);
                    }
                }
                Pick::Under(item, Box::new(Pick::all(picks)))
            }
            Matrix::PickRandom { item, choices } => {
                let chosen = random.randint(0, choices.len() as u64 - 1);
                let pick = choices[chosen as usize].index(chosen, random)?;
                Pick::Under(item, Box::new(Pick::All(vec![pick])))
            }
            Matrix::Sum {
                item,
                parts,
                size,
                pseudo_size,
                ..
            } => {
                let (part, within) = sum_locate(parts, *pseudo_size, u128::from(i % size));
                Pick::Under(item, Box::new(parts[part].index(within, random)?))
            }
            Matrix::Cycle { inner, .. } => {
                let size = inner.size();
                if size == 0 {
                    return Err(empty());
                }
                inner.index(i % size, random)?
            }
            Matrix::Subset { inner, which, .. } => {
                let at = i + which * self.size();
                let size = inner.size();
                if size == 0 {
                    return Err(empty());
                }
                // teuthology asserts the index stays inside the part; a nested subset
                // can be asked past it (as the last facet of a product), where
                // teuthology stops with an AssertionError. Wrapping keeps such a suite
                // usable; every suite teuthology expands is expanded the same.
                inner.index(if at < size { at } else { at % size }, random)?
            }
        })
    }
}

fn product_index<'m>(
    facets: &'m [(Count, Matrix)],
    i: Count,
    random: &mut PyRandom,
    into: &mut Vec<Pick<'m>>,
) -> Result<(), MatrixError> {
    let (stride, left) = &facets[0];
    if facets.len() == 1 {
        into.push(left.index(i, random)?);
        return Ok(());
    }
    let left_size = left.size();
    if left_size == 0 || *stride == 0 {
        return Err(MatrixError::NoJobs {
            item: left.item().to_owned(),
        });
    }
    let cycles = gcd(u128::from(*stride), u128::from(left_size));
    let cycle_len = u128::from(*stride) * u128::from(left_size) / cycles;
    let offset = ((u128::from(i) / cycle_len) % cycles) as Count;
    let left_pick = left.index((i - offset) % left_size, random)?;
    product_index(&facets[1..], i, random, into)?;
    into.push(left_pick);
    Ok(())
}

/// How many of the sum's pseudo indexes are at most `pseudo`: part `k` of `n` owns
/// `k, k + m_k, k + 2 m_k, …` with `m_k = pseudo_size / size_k`.
fn sum_count_upto(parts: &[Matrix], pseudo_size: u128, pseudo: u128) -> u128 {
    parts
        .iter()
        .enumerate()
        .map(|(offset, part)| {
            let offset = offset as u128;
            let multiple = pseudo_size / u128::from(part.size());
            if pseudo < offset {
                0
            } else {
                (pseudo - offset) / multiple + 1
            }
        })
        .sum()
}

/// Which part job `i` of a sum falls in, and its index inside that part: the `i`-th
/// smallest pseudo index, found by bisection rather than teuthology's table of all of
/// them, so a sum costs no memory per job.
fn sum_locate(parts: &[Matrix], pseudo_size: u128, i: u128) -> (usize, Count) {
    let (mut low, mut high) = (0u128, pseudo_size - 1);
    while low < high {
        let middle = low + (high - low) / 2;
        if sum_count_upto(parts, pseudo_size, middle) > i {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    let n = parts.len() as u128;
    let part = (low % n) as usize;
    let multiple = pseudo_size / u128::from(parts[part].size());
    (part, ((low - part as u128) / multiple) as Count)
}

impl<'m> Pick<'m> {
    /// A set of picks: sorted and without repeats, as a frozenset compares.
    fn all(mut picks: Vec<Pick<'m>>) -> Pick<'m> {
        picks.sort_unstable();
        picks.dedup();
        Pick::All(picks)
    }

    /// The job's description as teuthology writes it, before `.yaml` is removed and the
    /// suite name put in front: `{all/peer msgr-failures/few objectstore/bluestore}`.
    pub fn description(&self) -> String {
        match self {
            Pick::Leaf(name) => (*name).to_owned(),
            Pick::Under(name, inner) => join(name, &inner.description()),
            Pick::All(picks) => {
                let mut parts: Vec<String> = picks.iter().map(Pick::description).collect();
                parts.sort();
                format!("{{{}}}", parts.join(" "))
            }
        }
    }

    /// The fragment files of the job, as name paths, in teuthology's (sorted) order.
    pub fn paths(&self) -> Vec<Vec<&str>> {
        let mut lists = Vec::new();
        self.lists(&mut Vec::new(), &mut lists);
        lists.sort_unstable();
        lists.dedup();
        lists
    }

    fn lists<'a>(&'a self, prefix: &mut Vec<&'a str>, into: &mut Vec<Vec<&'a str>>) {
        match self {
            Pick::Leaf(name) => {
                let mut list = Vec::with_capacity(prefix.len() + 1);
                list.extend_from_slice(prefix);
                list.push(*name);
                into.push(list);
            }
            Pick::Under(name, inner) => {
                prefix.push(name);
                inner.lists(prefix, into);
                prefix.pop();
            }
            Pick::All(picks) => {
                for pick in picks {
                    pick.lists(prefix, into);
                }
            }
        }
    }
}

/// `os.path.join(left, right)` for the names teuthology joins (never absolute), with
/// its rule that an empty right side leaves the left alone.
pub fn join(left: &str, right: &str) -> String {
    if right.is_empty() {
        left.to_owned()
    } else if left.is_empty() || left.ends_with('/') {
        format!("{left}{right}")
    } else {
        format!("{left}/{right}")
    }
}
