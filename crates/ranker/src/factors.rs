//! Learned embeddings.

/// User and item embeddings (row-major), item biases, and training counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Factors {
    /// Embedding dimension.
    pub dim: usize,
    /// `n_users × dim`.
    pub users: Vec<f32>,
    /// `n_items × dim`.
    pub items: Vec<f32>,
    /// Per-item bias added to every score (0 for iALS).
    pub item_bias: Vec<f32>,
}

impl Factors {
    /// Number of users.
    pub fn n_users(&self) -> usize {
        self.users.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Number of items.
    pub fn n_items(&self) -> usize {
        self.items.len().checked_div(self.dim).unwrap_or(0)
    }

    /// User `u`'s embedding.
    pub fn user(&self, u: usize) -> &[f32] {
        &self.users[u * self.dim..(u + 1) * self.dim]
    }

    /// Item `i`'s embedding.
    pub fn item(&self, i: usize) -> &[f32] {
        &self.items[i * self.dim..(i + 1) * self.dim]
    }
}
