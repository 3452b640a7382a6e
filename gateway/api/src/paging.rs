//! EMQX 5 paging: query `page` (from 1, default 1) and `limit` (default 100, at most
//! [`MAX_LIMIT`]); answers `{"data": [...], "meta": {"page", "limit", "count", "hasnext"}}`.

use serde_json::{Value, json};

use crate::error::ApiError;

/// Default page size.
pub(crate) const DEFAULT_LIMIT: usize = 100;
/// Largest page size (EMQX's bound).
pub(crate) const MAX_LIMIT: usize = 10_000;

/// Largest page number (a bound the OpenAPI document can state; no list is that long).
pub(crate) const MAX_PAGE: usize = u32::MAX as usize;

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Page {
    pub(crate) page: usize,
    pub(crate) limit: usize,
}

impl Page {
    /// From the query's `page` and `limit` (absent: defaults); out of range is a 400.
    pub(crate) fn new(page: Option<usize>, limit: Option<usize>) -> Result<Page, ApiError> {
        let page = page.unwrap_or(1);
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if page == 0 || page > MAX_PAGE {
            return Err(ApiError::bad_request(format!("page: must be 1..={MAX_PAGE}")));
        }
        if limit == 0 || limit > MAX_LIMIT {
            return Err(ApiError::bad_request(format!("limit: must be 1..={MAX_LIMIT}")));
        }
        Ok(Page { page, limit })
    }

    /// Pages an iterator of matching items: renders only the page's items, counts the rest.
    pub(crate) fn collect<T>(self, items: impl Iterator<Item = T>, render: impl Fn(T) -> Value) -> Value {
        let skip = (self.page - 1).saturating_mul(self.limit);
        let mut count = 0usize;
        let mut data = Vec::with_capacity(self.limit.min(1024));
        for item in items {
            if count >= skip && data.len() < self.limit {
                data.push(render(item));
            }
            count += 1;
        }
        let hasnext = count > skip.saturating_add(self.limit);
        json!({
            "data": data,
            "meta": {"page": self.page, "limit": self.limit, "count": count, "hasnext": hasnext},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_meta() {
        let page = Page::new(Some(2), Some(3)).expect("valid");
        let out = page.collect(0..8, |i| json!(i));
        assert_eq!(out["data"], json!([3, 4, 5]));
        assert_eq!(out["meta"], json!({"page": 2, "limit": 3, "count": 8, "hasnext": true}));
        let last = Page::new(Some(3), Some(3)).expect("valid").collect(0..8, |i| json!(i));
        assert_eq!(last["data"], json!([6, 7]));
        assert_eq!(last["meta"]["hasnext"], json!(false));
        let past = Page::new(Some(9), Some(3)).expect("valid").collect(0..8, |i| json!(i));
        assert_eq!(past["data"], json!([]));
    }

    #[test]
    fn bounds() {
        assert_eq!(Page::new(None, None).expect("defaults").limit, DEFAULT_LIMIT);
        assert!(Page::new(Some(0), None).is_err());
        assert!(Page::new(None, Some(0)).is_err());
        assert!(Page::new(None, Some(MAX_LIMIT + 1)).is_err());
        assert!(Page::new(None, Some(MAX_LIMIT)).is_ok());
    }
}
