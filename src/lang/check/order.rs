//! Ordering: a topological order of the declarations, or the cycle that prevents one.
use super::*;

impl<'a> Checker<'a> {
    pub(super) fn order(
        &mut self,
        nodes: &[Node],
        dep_spans: &HashMap<String, Vec<(String, Span)>>,
    ) -> Vec<String> {
        let index: HashMap<&str, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        let edges: Vec<Vec<usize>> = nodes
            .iter()
            .map(|n| {
                n.deps
                    .iter()
                    .filter_map(|d| index.get(d.as_str()).copied())
                    .collect()
            })
            .collect();
        // Cycles: DFS, report each cycle once.
        let mut color = vec![0u8; nodes.len()];
        let mut reported: HashSet<Vec<usize>> = HashSet::new();
        for root in 0..nodes.len() {
            if color[root] != 0 {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
            let mut path: Vec<usize> = vec![root];
            color[root] = 1;
            while let Some(&mut (u, ref mut ei)) = stack.last_mut() {
                if *ei < edges[u].len() {
                    let v = edges[u][*ei];
                    *ei += 1;
                    if color[v] == 0 {
                        color[v] = 1;
                        stack.push((v, 0));
                        path.push(v);
                    } else if color[v] == 1 {
                        let pos = path.iter().position(|&x| x == v).expect("on path");
                        let cycle: Vec<usize> = path[pos..].to_vec();
                        let mut key = cycle.clone();
                        key.sort();
                        if reported.insert(key) {
                            self.report_cycle(nodes, &cycle, dep_spans);
                        }
                    }
                } else {
                    color[u] = 2;
                    stack.pop();
                    path.pop();
                }
            }
        }
        // Kahn, ties by source order.
        let mut indeg = vec![0usize; nodes.len()];
        let mut users: Vec<Vec<usize>> = vec![vec![]; nodes.len()];
        for (u, es) in edges.iter().enumerate() {
            let mut es = es.clone();
            es.sort();
            es.dedup();
            for v in es {
                indeg[u] += 1;
                users[v].push(u);
            }
        }
        let mut heap: BinaryHeap<std::cmp::Reverse<usize>> = (0..nodes.len())
            .filter(|&i| indeg[i] == 0)
            .map(std::cmp::Reverse)
            .collect();
        let mut out = vec![];
        while let Some(std::cmp::Reverse(i)) = heap.pop() {
            out.push(nodes[i].name.clone());
            for &u in &users[i] {
                indeg[u] -= 1;
                if indeg[u] == 0 {
                    heap.push(std::cmp::Reverse(u));
                }
            }
        }
        out
    }

    pub(super) fn report_cycle(
        &mut self,
        nodes: &[Node],
        cycle: &[usize],
        dep_spans: &HashMap<String, Vec<(String, Span)>>,
    ) {
        // Start at the node declared first.
        let start = (0..cycle.len()).min_by_key(|&i| cycle[i]).unwrap_or(0);
        let cyc: Vec<usize> = cycle[start..]
            .iter()
            .chain(cycle[..start].iter())
            .copied()
            .collect();
        let names: Vec<&str> = cyc.iter().map(|&i| nodes[i].name.as_str()).collect();
        let chain = names
            .iter()
            .chain(std::iter::once(&names[0]))
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(" → ");
        let edge_span = |from: &str, to: &str| {
            dep_spans
                .get(from)
                .and_then(|v| v.iter().find(|(n, _)| n == to))
                .map(|(_, s)| *s)
        };
        let first_to = names.get(1).copied().unwrap_or(names[0]);
        let primary = edge_span(names[0], first_to).unwrap_or(nodes[cyc[0]].span);
        let msg = if names.len() == 1 {
            format!("`{}` depends on itself", names[0])
        } else {
            format!("dependency cycle: {chain}")
        };
        let mut d = Diagnostic::new(Code::Cycle, primary, msg)
            .label(format!("`{}` uses `{first_to}` here", names[0]));
        for k in 1..names.len() {
            let to = names[(k + 1) % names.len()];
            if let Some(s) = edge_span(names[k], to) {
                d = d.note(s, format!("`{}` uses `{to}` here", names[k]));
            }
        }
        d = d.help(
            "declarations must form a DAG: each may only use declarations that do not use it",
        );
        self.err(d);
    }
}

